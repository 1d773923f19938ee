# Finds xsimd and makes its target usable on every system we support.
# Debian's xsimd 8.1 exports the target `xsimd` (no namespace) whose link interface names `xtl`
# without finding it, which links as a missing `-lxtl`. xtl is header-only and xsimd needs it only
# for xtl's complex numbers, which distill does not use: when no xtl package is installed, an empty
# stand-in target satisfies the name.
find_package(xsimd REQUIRED)
if(NOT TARGET xtl)
    find_package(xtl QUIET)
    if(NOT TARGET xtl)
        add_library(xtl INTERFACE IMPORTED GLOBAL)
    endif()
endif()
