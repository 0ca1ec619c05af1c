// SPDX-License-Identifier: Apache-2.0
// io_interop_loader LAYOUT DIR: the lowbit half of the Python interop checks, one executable for
// the four layouts (bnb_interop.py, fp8_block_interop.py, mxfp4_interop.py,
// compressed_tensors_interop.py document each protocol). Its sources are built as one translation
// unit (CMake UNITY_BUILD): each loader instantiates the whole engine, which took 55-75 s of
// compile per loader as separate executables.
#include <cstdio>
#include <cstring>

namespace bnb_loader {
int run(int argc, char** argv);
}
namespace fp8_block_loader {
int run(int argc, char** argv);
}
namespace mxfp4_loader {
int run(int argc, char** argv);
}
namespace compressed_tensors_loader {
int run(int argc, char** argv);
}

int main(int argc, char** argv) {
  struct layout {
    const char* name;
    int (*run)(int, char**);
  };
  const layout layouts[] = {{"bnb", bnb_loader::run},
                            {"fp8_block", fp8_block_loader::run},
                            {"mxfp4", mxfp4_loader::run},
                            {"compressed_tensors", compressed_tensors_loader::run}};
  if (argc >= 2)
    for (const layout& l : layouts)
      if (std::strcmp(argv[1], l.name) == 0) return l.run(argc - 1, argv + 1);
  std::fprintf(stderr, "usage: io_interop_loader bnb|fp8_block|mxfp4|compressed_tensors DIR\n");
  return 2;
}
