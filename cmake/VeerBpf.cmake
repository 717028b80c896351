# veer_bpf_object(<name> <source.bpf.c>)
#
# The one way a BPF program is built: clang compiles <source.bpf.c> into
# <name>.bpf.o (-O2 -g -target bpf, warnings are errors, BTF kept for libbpf),
# `bpftool gen skeleton` turns that into <name>.skel.h, and the INTERFACE
# target <name>_skel puts the skeleton on the include path of whoever links it.
# ${name}_BPF_OBJECT is set in the caller's scope to the object's path.
find_program(VEER_CLANG NAMES clang clang-16 clang-14 REQUIRED)
find_program(VEER_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

set(VEER_BPF_CFLAGS -O2 -g -target bpf -D__TARGET_ARCH_x86
    -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers
    -I${PROJECT_SOURCE_DIR}/bpf/include -I${PROJECT_SOURCE_DIR}/bpf
    # <asm/types.h> lives under the multiarch folder on Debian.
    -idirafter /usr/include/${CMAKE_LIBRARY_ARCHITECTURE})

function(veer_bpf_object name src)
  get_filename_component(src_abs ${src} ABSOLUTE)
  set(obj ${CMAKE_CURRENT_BINARY_DIR}/${name}.bpf.o)
  set(skel ${CMAKE_CURRENT_BINARY_DIR}/${name}.skel.h)
  set(dep ${CMAKE_CURRENT_BINARY_DIR}/${name}.bpf.d)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${VEER_CLANG} ${VEER_BPF_CFLAGS} -MD -MF ${dep} -c ${src_abs} -o ${obj}
    DEPENDS ${src_abs}
    DEPFILE ${dep}
    COMMENT "BPF ${name}: ${src}"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND sh -c "${VEER_BPFTOOL} gen skeleton ${obj} name ${name} > ${skel}.tmp && mv ${skel}.tmp ${skel}"
    DEPENDS ${obj}
    COMMENT "BPF skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(${name}_skel_gen DEPENDS ${skel})
  add_library(${name}_skel INTERFACE)
  target_include_directories(${name}_skel INTERFACE ${CMAKE_CURRENT_BINARY_DIR})
  add_dependencies(${name}_skel ${name}_skel_gen)
  set(${name}_BPF_OBJECT ${obj} PARENT_SCOPE)
endfunction()
