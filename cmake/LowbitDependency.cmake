# SPDX-License-Identifier: Apache-2.0
# lowbit_dependency(): an installed package first, a pinned release otherwise.
#
#   lowbit_dependency(<Package> TARGET <imported target> [VERSION <minimum>] FOR <what needs it>
#                     URL <archive of a release> SHA256 <its hash> NAME <FetchContent name>
#                     INSTALL <"Debian/Ubuntu: ...\n  Fedora: ...\n  macOS: ..."> [SET <var>=<value>...])
#
# 1. find_package(<Package> [<minimum>] QUIET); done when it defines TARGET.
# 2. Otherwise, when LOWBIT_FETCH_DEPENDENCIES is ON (the default), the pinned archive: taken from
#    the folder LOWBIT_DEPENDENCY_ARCHIVES when it holds <NAME>-<the URL's file name> (a machine
#    without network access), else downloaded into the build tree; either way its SHA-256 must
#    match. It is added with FetchContent (its targets marked SYSTEM, its options set by SET). A
#    source tree given with FETCHCONTENT_SOURCE_DIR_<NAME> is used as is, without a download.
# 3. If the package is neither installed nor obtainable, configure stops with a message naming the
#    package to install on Debian/Ubuntu, Fedora and macOS, and the archive for an offline build.
include_guard(GLOBAL)
include(FetchContent)

option(LOWBIT_FETCH_DEPENDENCIES
       "Download a pinned release of a dependency that find_package does not find" ON)
set(LOWBIT_DEPENDENCY_ARCHIVES "" CACHE PATH
    "Folder holding the pinned dependency archives (for a configure without network access)")

function(lowbit_dependency package)
  cmake_parse_arguments(D "" "TARGET;VERSION;FOR;URL;SHA256;NAME;INSTALL" "SET" ${ARGN})
  foreach(arg TARGET FOR URL SHA256 NAME INSTALL)
    if(NOT D_${arg})
      message(FATAL_ERROR "lowbit_dependency(${package}): ${arg} is required")
    endif()
  endforeach()
  if(TARGET ${D_TARGET})
    return()
  endif()
  find_package(${package} ${D_VERSION} QUIET)
  if(TARGET ${D_TARGET})
    return()
  endif()

  get_filename_component(_file "${D_URL}" NAME)
  set(_file "${D_NAME}-${_file}")  # GitHub's tag archives are called v1.2.3.tar.gz
  string(TOUPPER "${D_NAME}" _upper)
  set(_what "${D_FOR} needs ${package}")
  if(D_VERSION)
    string(APPEND _what " >= ${D_VERSION}")
  endif()
  set(_install_hint
      "Install it and configure again:\n  ${D_INSTALL}\n"
      "or, without network access, save ${D_URL} (SHA-256 ${D_SHA256}) as <folder>/${_file} and "
      "configure with -DLOWBIT_DEPENDENCY_ARCHIVES=<folder>.")
  if(NOT LOWBIT_FETCH_DEPENDENCIES)
    message(FATAL_ERROR "lowbit: ${_what}, which is not installed (LOWBIT_FETCH_DEPENDENCIES is OFF). "
                        ${_install_hint})
  endif()

  if(FETCHCONTENT_SOURCE_DIR_${_upper})
    set(_source "${FETCHCONTENT_SOURCE_DIR_${_upper}}")
    set(_origin "${_source}")
    message(STATUS "lowbit: ${package} not installed; using FETCHCONTENT_SOURCE_DIR_${_upper}=${_source}")
  else()
    if(LOWBIT_DEPENDENCY_ARCHIVES AND EXISTS "${LOWBIT_DEPENDENCY_ARCHIVES}/${_file}")
      set(_archive "${LOWBIT_DEPENDENCY_ARCHIVES}/${_file}")
      set(_origin "${_archive}")
    else()
      set(_archive "${CMAKE_BINARY_DIR}/_deps/${D_NAME}-archive/${_file}")
      set(_origin "${D_URL}")
      if(EXISTS "${_archive}")
        file(SHA256 "${_archive}" _have)
      endif()
      if(NOT EXISTS "${_archive}" OR NOT _have STREQUAL D_SHA256)
        message(STATUS "lowbit: ${package} not installed; downloading ${D_URL}")
        # No EXPECTED_HASH here: with it, a failed download is a hard error this function could not
        # explain; the hash is checked below.
        file(DOWNLOAD "${D_URL}" "${_archive}" STATUS _status INACTIVITY_TIMEOUT 60 TIMEOUT 600)
        list(GET _status 0 _code)
        if(NOT _code EQUAL 0)
          list(GET _status 1 _reason)
          file(REMOVE "${_archive}")
          message(FATAL_ERROR "lowbit: ${_what}, which is not installed, and downloading its pinned "
                              "release failed (${D_URL}: ${_reason}). " ${_install_hint})
        endif()
      endif()
    endif()
    file(SHA256 "${_archive}" _have)
    if(NOT _have STREQUAL D_SHA256)
      if(NOT _origin STREQUAL _archive)
        file(REMOVE "${_archive}")
      endif()
      message(FATAL_ERROR "lowbit: ${_what}, which is not installed, and ${_origin} is not the pinned "
                          "release (SHA-256 ${_have}, expected ${D_SHA256}). " ${_install_hint})
    endif()
    message(STATUS "lowbit: ${package} not installed; building it from ${_origin}")
    set(_source "")
  endif()

  # The dependency's options, as plain variables its option() calls honour (CMP0077).
  set(CMAKE_POLICY_DEFAULT_CMP0077 NEW)
  foreach(assignment IN LISTS D_SET)
    string(REGEX MATCH "^([^=]+)=(.*)$" _ "${assignment}")
    set(${CMAKE_MATCH_1} "${CMAKE_MATCH_2}")
  endforeach()
  if(_source)
    FetchContent_Declare(${D_NAME} SOURCE_DIR "${_source}")
  else()
    FetchContent_Declare(${D_NAME} URL "${_archive}" URL_HASH SHA256=${D_SHA256})
  endif()
  FetchContent_MakeAvailable(${D_NAME})
  if(NOT TARGET ${D_TARGET})
    message(FATAL_ERROR "lowbit: ${package} from ${_origin} did not define ${D_TARGET}")
  endif()
  # Its headers are system headers to lowbit's warnings, as an installed package's are. (Not
  # FetchContent_Declare's SYSTEM keyword: CMake 3.25.0 and 3.25.1 pass it on to ExternalProject,
  # which rejects it.)
  FetchContent_GetProperties(${D_NAME} SOURCE_DIR _source)
  _lowbit_mark_system("${_source}")
endfunction()

# Sets the SYSTEM property on every target defined in `dir` and its subdirectories.
function(_lowbit_mark_system dir)
  get_property(_targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  foreach(t IN LISTS _targets)
    set_property(TARGET ${t} PROPERTY SYSTEM ON)
  endforeach()
  get_property(_subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(d IN LISTS _subdirs)
    _lowbit_mark_system("${d}")
  endforeach()
endfunction()
