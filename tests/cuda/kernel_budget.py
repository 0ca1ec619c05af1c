#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Static performance check of lowbit's CUDA kernels from their SASS (see docs/cuda-kernel-budgets.md).

For every kernel of a cubin (one architecture) it finds the steady state, reports instructions per
element, global memory instructions and their widths, registers, occupancy and calls, and compares
them with the budget table of docs/cuda-kernel-budgets.md (the one place where budgets and the
roofline that derives them live).

Steady state:
- a row whose elements are "trip N": the innermost loop holding widest global loads; N elements per
  trip, a fact of the kernel's source the row states (the fused matmul's loop loads x as wide as W's
  codes, so the bytes it loads do not count W's elements).
- a kernel whose widest global store (or, for kernels defined by their input, widest global load)
  sits in a loop: the innermost such loop. Instructions per iteration = every instruction of the
  loop body (an upper bound: a predicated or skipped instruction still counts); elements per
  iteration = bytes the body stores (or loads) / element size.
- a row whose elements end in "each" (e.g. "in T each"): every outermost loop holding widest
  accesses is a steady state, counted as above, and the kernel's figure is the largest (a kernel
  with a loop per layout variant, such as the block-scaled quantizer's 1 x 16 and 1 x 32 tiles).
- a kernel without such a loop: the longest entry -> exit path (one trip round every loop) through
  every block holding a widest access, called routines included: an upper bound on what a thread
  that handles a full group executes; the region checked for calls is every block on a forward
  path from the entry through the last such access to an exit.
A CALL in the steady-state region fails the check (division and other slow-path routines).

A row of the budget table applies to the architectures its optional `arch` column names: `all`, or
comma-separated terms `N`, `>=N` or `<N` (sm_N), any of which may match. A kernel whose code
differs by architecture (a hardware conversion from sm_89 on) has one row per code path; the first
row whose arch and kernel regex both match is the kernel's budget.

usage: kernel_budget.py --cuobjdump PATH --cubin FILE --arch 90 --budgets docs/cuda-kernel-budgets.md
"""
import argparse
import re
import subprocess
import sys

# ---- SASS parsing ------------------------------------------------------------------------------

INSN = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;\s*/\*")


class Insn:
    __slots__ = ("addr", "pred", "op", "args", "text")

    def __init__(self, addr, text):
        self.addr = addr
        self.text = text
        m = re.match(r"^(@!?U?P[T0-9]+\s+)?(\S+)\s*(.*)$", text)
        self.pred = (m.group(1) or "").strip()
        self.op = m.group(2)
        self.args = m.group(3)

    @property
    def base(self):
        return self.op.split(".")[0]


def parse_sass(text):
    """{mangled name: [Insn]} from `cuobjdump -sass` output."""
    funcs, cur = {}, None
    for line in text.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        m = INSN.match(line)
        if m and cur is not None:
            cur.append(Insn(int(m.group(1), 16), m.group(2)))
    return funcs


def parse_resources(text):
    """{mangled name: (registers, shared bytes)} from `cuobjdump -res-usage`."""
    res, cur = {}, None
    for line in text.splitlines():
        m = re.search(r"Function (\S+):", line)
        if m:
            cur = m.group(1)
            continue
        m = re.search(r"REG:(\d+) .*SHARED:(\d+)", line)
        if m and cur:
            res[cur] = (int(m.group(1)), int(m.group(2)))
    return res


def branch_target(i):
    m = re.search(r"(?:BRA|CALL\.REL(?:\.NOINC)?|BSSY\s+B\d+,)\s*`?\(?(0x[0-9a-f]+)", i.op + " " + i.args)
    if i.base in ("BRA", "CALL"):
        m = re.search(r"(0x[0-9a-f]+)", i.args)
        return int(m.group(1), 16) if m else None
    return None


def conditional_branch(i):
    """Whether a BRA may fall through: a guard predicate (`@P0 BRA`), a predicate operand
    (`BRA.U !UP0, target`, `BRA P1, target`), or `BRA.DIV` (taken only when the warp has
    diverged: ptxas's out-of-line path for a warp-synchronous instruction)."""
    return bool(i.pred) or ".DIV" in i.op or re.match(r"!?U?P[T0-9]+\s*,", i.args) is not None


def mem_width(i):
    """(kind, bytes) of a global load/store: kind 'ld' or 'st'; None otherwise."""
    b = i.base
    if b in ("LDG", "STG"):
        mods = i.op.split(".")[1:]
        width = 4
        for mm in mods:
            if mm in ("128",):
                width = 16
            elif mm == "64":
                width = 8
            elif mm in ("U8", "S8"):
                width = 1
            elif mm in ("U16", "S16"):
                width = 2
        return ("ld" if b == "LDG" else "st", width)
    return None


class Cfg:
    def __init__(self, insns):
        self.insns = insns
        self.index = {ins.addr: k for k, ins in enumerate(insns)}
        self._returns = {}
        leaders = {0}
        for k, ins in enumerate(insns):
            t = branch_target(ins)
            if ins.base in ("BRA", "EXIT", "RET", "BRX", "CALL", "JMP") and k + 1 < len(insns):
                leaders.add(k + 1)
            if t is not None and t in self.index:
                leaders.add(self.index[t])
        self.starts = sorted(leaders)
        self.block_of = {}
        self.blocks = []
        for n, s in enumerate(self.starts):
            e = self.starts[n + 1] if n + 1 < len(self.starts) else len(insns)
            self.blocks.append((s, e))
            for k in range(s, e):
                self.block_of[k] = n
        self.succ = []
        for n, (s, e) in enumerate(self.blocks):
            last = insns[e - 1]
            out = []
            t = branch_target(last)
            fall = e < len(insns)
            if last.base == "BRA":
                if t is not None and t in self.index:
                    out.append(self.block_of[self.index[t]])
                if fall and conditional_branch(last):
                    out.append(n + 1)
            elif last.base in ("EXIT", "RET"):
                if last.pred and fall:
                    out.append(n + 1)
            elif fall:
                out.append(n + 1)
            self.succ.append(out)

    def size(self, n):
        s, e = self.blocks[n]
        return e - s

    def is_call(self, ins):
        """A call of a routine (division, remainder, ...): its target reaches a RET. A
        CALL.REL.NOINC into the kernel's own body, which reaches only EXITs, is how ptxas leaves a
        loop under divergence, not a call."""
        if ins.base != "CALL":
            return False
        t = branch_target(ins)
        if t is None or t not in self.index:
            return True
        n = self.block_of[self.index[t]]
        if n not in self._returns:
            self._returns[n] = any(self.insns[self.blocks[m][1] - 1].base == "RET" for m in self.reach(n, forward_only=False))
        return self._returns[n]

    def calls(self, n):
        s, e = self.blocks[n]
        return [self.insns[k] for k in range(s, e) if self.is_call(self.insns[k])]

    def call_cost(self, ins):
        """Instructions on the longest forward path through a called routine (entry to RET)."""
        t = branch_target(ins)
        if t is None or t not in self.index:
            return 0
        src = self.block_of[self.index[t]]
        rets = [n for n, (s, e) in enumerate(self.blocks) if self.insns[e - 1].base == "RET"]
        d = self.longest(src, with_calls=False)
        return max((d[n] for n in rets if n in d), default=0)

    def weight(self, n, with_calls=True):
        w = self.size(n)
        if with_calls:
            w += sum(self.call_cost(c) for c in self.calls(n))
        return w

    def longest(self, src, with_calls=True):
        """Most instructions on any forward path from the start of block src to the end of each block
        (back edges dropped: one trip round every loop), called routines included."""
        dist = {src: self.weight(src, with_calls)}
        for n in range(src, len(self.blocks)):
            if n not in dist:
                continue
            for m in self.succ[n]:
                if m > n:
                    nd = dist[n] + self.weight(m, with_calls)
                    if nd > dist.get(m, -1):
                        dist[m] = nd
        return dist

    def reach(self, src, forward_only=True):
        seen, todo = {src}, [src]
        while todo:
            n = todo.pop()
            for m in self.succ[n]:
                if forward_only and m <= n:
                    continue
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    def loops(self):
        """(head block, tail block) of every back edge whose tail the head reaches by forward
        edges: a loop laid out between them. A branch back from out-of-line code (the path a
        BRA.DIV takes when the warp has diverged, placed after the kernel's body, returning into
        the loop that left it) is not one: its head reaches it only through the loop's back edge."""
        return [(m, n) for n in range(len(self.blocks)) for m in self.succ[n] if m <= n and n in self.reach(m)]


# ---- per-kernel analysis ---------------------------------------------------------------------


def loop_figure(insns, cfg, s, e, basis, elem_bytes):
    """(instructions, elements) of the loop spanning instructions [s, e) (see analyze): every
    instruction of the body, called routines included; elements from the loop's own accesses (an
    inner loop, a rarely taken sequential sum or a rescan for the first non-finite element, reads
    other arrays, or its elements again)."""
    count = sum(1 for k in range(s, e) if insns[k].base not in ("NOP",))
    count += sum(cfg.call_cost(insns[k]) for k in range(s, e) if cfg.is_call(insns[k]))
    inner = set()
    for h2, t2 in cfg.loops():
        s2, e2 = cfg.blocks[h2][0], cfg.blocks[t2][1]
        if s <= s2 and e2 <= e and (s2, e2) != (s, e):
            inner.update(range(s2, e2))
    elems = sum(mem_width(insns[k])[1] for k in range(s, e) if k not in inner and mem_width(insns[k]) and mem_width(insns[k])[0] == basis)
    return count, elems / elem_bytes


def analyze(insns, basis, elem_bytes, innermost=False, each=False):
    """basis 'st' or 'ld': elements counted from the bytes stored or loaded. innermost: the
    steady state is the innermost loop holding widest accesses (a row's stated trip). each: every
    outermost loop holding widest accesses is a steady state (a kernel with one loop per layout
    variant), and the figure is the largest of theirs."""
    cfg = Cfg(insns)
    widths = [(k, mem_width(ins)) for k, ins in enumerate(insns) if mem_width(ins)]
    mem_summary = {}
    for _, (kind, w) in widths:
        mem_summary[(kind, w)] = mem_summary.get((kind, w), 0) + 1
    anchors_all = [k for k, (kind, w) in widths if kind == basis]
    r = {"static": len(insns), "mem": mem_summary, "calls_total": sum(1 for i in insns if cfg.is_call(i))}
    if not anchors_all:
        r.update(kind="none", per_elem=None, calls=0, region=0, elems=0)
        return r
    wmax = max(mem_width(insns[k])[1] for k in anchors_all)
    anchors = [k for k in anchors_all if mem_width(insns[k])[1] == wmax]
    ablocks = sorted({cfg.block_of[k] for k in anchors})
    # the loop holding the most widest accesses (the unrolled main loop, not a remainder loop),
    # innermost among equals
    best, best_key = None, None
    for head, tail in cfg.loops():
        s, e = cfg.blocks[head][0], cfg.blocks[tail][1]
        held = sum(1 for k in anchors if s <= k < e)
        if held and innermost:
            if best_key is None or (e - s) < -best_key[1]:
                best, best_key = (s, e), (held, -(e - s))
        elif held and (best_key is None or (held, -(e - s)) > best_key):
            best, best_key = (s, e), (held, -(e - s))
    if each and best is not None:
        spans = [(cfg.blocks[h][0], cfg.blocks[t][1]) for h, t in cfg.loops()]
        held = [(a, b) for a, b in spans if any(a <= k < b for k in anchors)]
        outer = sorted({(a, b) for a, b in held if not any(c <= a and b <= d and (c, d) != (a, b) for c, d in held)})
        figures = [loop_figure(insns, cfg, a, b, basis, elem_bytes) for a, b in outer]
        best = max(zip(figures, outer), key=lambda fo: fo[0][0] / fo[0][1] if fo[0][1] else 0.0)[1]
    if best is not None:
        s, e = best
        count, elems = loop_figure(insns, cfg, s, e, basis, elem_bytes)
        calls = [insns[k] for k in range(s, e) if cfg.is_call(insns[k])]
        r.update(kind="loop", count=count, elems=elems, calls=len(calls), region=e - s,
                 where="%04x-%04x" % (insns[s].addr, insns[e - 1].addr))
    else:
        # longest forward path entry -> every anchor block (address order) -> exit
        path_ok = True
        legs = [0] + [b for b in ablocks if b != 0]
        total = cfg.weight(0)
        for x, y in zip(legs, legs[1:]):
            dd = cfg.longest(x)
            if y not in dd:
                path_ok = False
                break
            total += dd[y] - cfg.weight(x)
        if path_ok:
            dd = cfg.longest(ablocks[-1])
            exits = [n for n, (s, e) in enumerate(cfg.blocks) if insns[e - 1].base == "EXIT" and not insns[e - 1].pred]
            ex = max((dd[n] for n in exits if n in dd), default=None)
            if ex is None:
                path_ok = False
            else:
                total += ex - cfg.weight(ablocks[-1])
        path_bytes = sum(mem_width(insns[k])[1] for b in ablocks for k in range(*cfg.blocks[b])
                         if mem_width(insns[k]) and mem_width(insns[k])[0] == basis)
        # region: every block of a forward path entry -> last anchor block -> exit
        last = ablocks[-1]
        to_last = {n for n in cfg.reach(0) if last in cfg.reach(n)}
        region = to_last | cfg.reach(last)
        calls = [c for n in region for c in cfg.calls(n)]
        r.update(kind="path" if path_ok else "none", count=total, elems=path_bytes / elem_bytes,
                 calls=len(calls), region=sum(cfg.size(n) for n in region))
    r["per_elem"] = r["count"] / r["elems"] if r.get("elems") else None
    return r


# ---- occupancy -------------------------------------------------------------------------------

# per architecture: max warps per SM, registers per SM, shared memory per SM (bytes), max CTAs per SM
ARCH = {
    "75": (32, 65536, 65536, 16),
    "80": (64, 65536, 167936, 32),
    "86": (48, 65536, 102400, 16),
    "89": (48, 65536, 102400, 24),
    "90": (64, 65536, 233472, 32),
    "100": (64, 65536, 233472, 32),
    "120": (48, 65536, 102400, 24),
}


def occupancy(arch, regs, smem, threads=256):
    max_warps, regfile, smem_sm, max_ctas = ARCH[arch]
    warps = (threads + 31) // 32
    per_warp = ((max(regs, 1) * 32 + 255) // 256) * 256
    by_regs = (regfile // per_warp) // warps
    by_smem = smem_sm // (smem + 1024) if arch != "75" else smem_sm // max(smem, 1)
    ctas = min(by_regs, by_smem, max_warps // warps, max_ctas)
    return 100.0 * ctas * warps / max_warps


# ---- budgets -----------------------------------------------------------------------------------


def read_tables(path):
    """The budget table and the GPU table of docs/cuda-kernel-budgets.md (between marker comments)."""
    text = open(path, encoding="utf-8").read()

    def table(name):
        m = re.search(r"<!-- %s -->(.*?)<!-- /%s -->" % (name, name), text, re.S)
        if not m:
            sys.exit("FAIL: %s has no '%s' table" % (path, name))
        rows = []
        for line in m.group(1).strip().splitlines():
            # cells split on unescaped pipes; "\|" is a pipe inside a cell (markdown's escape)
            cells = [c.strip().strip("`").replace("\\|", "|")
                     for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if cells and not re.match(r"^-+$", cells[0].replace(":", "")):
                rows.append(cells)
        return rows[0], rows[1:]

    return table("budgets"), table("gpus"), text


def arch_applies(spec, arch):
    """Whether a budget row's `arch` cell (see the module comment) names sm_`arch`."""
    spec = spec.strip()
    if spec in ("", "all"):
        return True
    n = int(re.match(r"\d+", arch).group(0))
    for term in spec.replace(" ", "").split(","):
        m = re.fullmatch(r"(>=|<)?(\d+)", term)
        if not m:
            sys.exit("FAIL: budget table: arch cell %r: want 'all' or terms N, >=N, <N" % spec)
        op, v = m.group(1), int(m.group(2))
        if (op == ">=" and n >= v) or (op == "<" and n < v) or (op is None and n == v):
            return True
    return False


def demangle(names):
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


def elem_size(dem, which):
    """Element bytes of the template type T in the demangled name, or of codes."""
    if which.startswith("code"):
        return float(which.split(":")[1]) if ":" in which else 1.0
    # T is the first template argument, after a format, before bool flags (int8_epilogue_kernel<T, true>)
    m = re.search(r"<(?:\(lowbit::v0_1::(?:scaled_)?format\)\d+, )?(lowbit::v0_1::bf16|lowbit::v0_1::f16|float)(?:, (?:true|false))*>", dem)
    if not m:
        return 4.0
    return {"float": 4.0, "lowbit::v0_1::f16": 2.0, "lowbit::v0_1::bf16": 2.0}[m.group(1)]


FORMATS = ["nf4", "bnb_fp4", "bnb_dynamic8", "int8_absmax", "uint8_zeropoint", "e4m3fn", "e5m2", "e2m1fn"]
SCALED_FORMATS = ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4", "nvfp4", "fp8_e4m3_block"]


def short(dem):
    s = re.sub(r"lowbit::v0_1::(cuda::)?(detail::|int8_detail::)?", "", dem)
    s = re.sub(r"\(format\)(\d+)", lambda m: FORMATS[int(m.group(1))] if int(m.group(1)) < len(FORMATS) else m.group(0), s)
    s = re.sub(r"\(scaled_format\)(\d+)", lambda m: SCALED_FORMATS[int(m.group(1))] if int(m.group(1)) < len(SCALED_FORMATS) else m.group(0), s)
    return re.sub(r"\(.*$", "", s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuobjdump", required=True)
    ap.add_argument("--cubin", required=True)
    ap.add_argument("--arch", required=True)
    ap.add_argument("--budgets", required=True)
    ap.add_argument("--only", default="", help="regex: analyze only these kernels (demangled)")
    args = ap.parse_args()

    (bhead, brows), (ghead, grows), _ = read_tables(args.budgets)
    col = {h: k for k, h in enumerate(bhead)}
    gcol = {h: k for k, h in enumerate(ghead)}
    budgets = [(re.compile(r[col["kernel"]]), r) for r in brows
               if "arch" not in col or arch_applies(r[col["arch"]], args.arch)]
    gpus = [(r[gcol["GPU"]], float(r[gcol["HBM TB/s"]]) * 1e12,
             int(r[gcol["SMs"]]) * float(r[gcol["GHz"]]) * 1e9 * float(r[gcol["IPC per SM"]]) * 32) for r in grows]

    # --cubin may be a cubin or an object with a fat binary of several architectures (the one
    # cuda_kernel_resources builds): -arch keeps this architecture's code, and a file without it fails.
    def dump(what):
        p = subprocess.run([args.cuobjdump, what, "-arch", "sm_" + args.arch, args.cubin], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit("FAIL: %s %s %s exited %d: %s" % (args.cuobjdump, what, args.cubin, p.returncode, p.stderr.strip()))
        return p.stdout
    sass, resu = dump("-sass"), dump("-res-usage")
    archs = set(re.findall(r"code for sm_(\d+a?)", sass))
    if archs != {args.arch}:
        sys.exit("FAIL: %s holds SASS for %s, wanted exactly sm_%s" % (args.cubin, sorted(archs) or "no architecture", args.arch))
    funcs = parse_sass(sass)
    res = parse_resources(resu)
    dem = demangle(list(funcs))
    only = re.compile(args.only) if args.only else None

    fails, rows = [], []
    for name in sorted(funcs, key=lambda n: short(dem[n])):
        d = dem[name]
        if only and not only.search(d):
            continue
        match = next((r for rx, r in budgets if rx.search(d)), None)
        if match is None:
            fails.append("%s: no row of the budget table names this kernel" % short(d))
            continue
        basis = match[col["elements"]]
        kind, _, which = basis.partition(" ")
        if kind == "trip":
            # elements per trip of the steady-state loop, stated by the row (the loop loads other
            # operands as wide as its elements' codes, so bytes cannot count them)
            esize = 1.0
            r = analyze(funcs[name], "ld", esize, innermost=True)
            if r["kind"] == "loop":
                r["elems"] = float(which)
                r["per_elem"] = r["count"] / r["elems"]
            else:
                r.update(kind="none", per_elem=None)
        else:
            which, _, mode = which.partition(" ")
            esize = elem_size(d, which or "T")
            r = analyze(funcs[name], "st" if kind == "out" else "ld", esize, each=mode == "each")
        regs, smem = res.get(name, (0, 0))
        occ = occupancy(args.arch, regs, smem)
        ceiling = float(match[col["instr/elem ceiling"]])
        min_occ = float(match[col["min occupancy %"]])
        bpe = float(eval(match[col["bytes/elem"]].replace("T", str(esize)), {"__builtins__": {}}))
        pe = r["per_elem"]
        est = []
        for gname, bw, issue in gpus:
            if pe:
                frac = min(1.0, issue / pe * bpe / bw)
                est.append("%s %3.0f%%" % (gname, 100 * frac))
        mem = " ".join("%s%d×%d" % (k, w * 8, c) for (k, w), c in sorted(r["mem"].items()))
        problems = []
        if r["kind"] == "none" or pe is None:
            problems.append("no steady state found")
        elif pe > ceiling + 1e-9:
            problems.append("%.1f instructions/element > ceiling %.1f" % (pe, ceiling))
        max_calls = int(match[col["calls"]]) if "calls" in col else 0
        if r["calls"] > max_calls:
            problems.append("%d CALL(s) in the steady state (allowed: %d)" % (r["calls"], max_calls))
        if occ + 1e-9 < min_occ:
            problems.append("occupancy %.0f%% < %.0f%%" % (occ, min_occ))
        status = "ok" if not problems else "FAIL"
        target = ""
        if "H200 target %" in col and gpus:
            # the instructions per element that reach the target fraction of the first GPU named H200
            gname, bw, issue = next((g for g in gpus if g[0] == "H200"), gpus[0])
            p = float(match[col["H200 target %"]]) / 100
            need = issue * bpe / (p * bw)
            target = "at target (<= %.1f for %.0f%% of %s)" % (need, 100 * p, gname) if ceiling <= need + 1e-9 and pe \
                else "guard only: target <= %.1f for %.0f%% of %s" % (need, 100 * p, gname)
        rows.append((short(d), r, regs, occ, mem, est, status, ceiling))
        for p in problems:
            fails.append("%s (sm_%s): %s" % (short(d), args.arch, p))
        print("%-4s %-62s %-4s ins/elem %6s (ceiling %5.1f) regs %3d occ %3.0f%% calls %d/%d  [%s]  %s" % (
            status, short(d), r["kind"], "%.2f" % pe if pe else "-", ceiling, regs, occ, r["calls"],
            r["calls_total"], mem, ", ".join(est)), target)
    print("kernel budget, sm_%s: %d kernels, %d failures" % (args.arch, len(rows), len(fails)))
    for f in fails:
        print("FAIL: " + f)
    if not rows:
        print("FAIL: no kernel analyzed")
        return 1
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
