# Finds xsimd and makes its target usable on every system we support.
# Debian's xsimd 8.1 exports the target `xsimd` (no namespace) whose link interface names `xtl`
# without finding it, which links as a missing `-lxtl`. xtl is header-only and xsimd needs it only
# for xtl's complex numbers, which distill does not use. So when this file imports `xsimd` itself
# and no xtl package is installed, it drops the dangling name from the target it just imported.
# Nothing else is created: no stand-in target that would shadow a later find_package(xtl), and no
# global one. An `xsimd` target that already existed (found by a parent project) is left as it is.
set(_distill_imports_xsimd TRUE)
if(TARGET xsimd)
    set(_distill_imports_xsimd FALSE)
endif()
find_package(xsimd REQUIRED)
if(_distill_imports_xsimd AND NOT TARGET xtl)
    get_target_property(_distill_xsimd_links xsimd INTERFACE_LINK_LIBRARIES)
    if(_distill_xsimd_links AND "xtl" IN_LIST _distill_xsimd_links)
        find_package(xtl QUIET)
        if(NOT TARGET xtl)
            list(REMOVE_ITEM _distill_xsimd_links xtl)
            set_property(TARGET xsimd PROPERTY INTERFACE_LINK_LIBRARIES "${_distill_xsimd_links}")
        endif()
    endif()
    unset(_distill_xsimd_links)
endif()
unset(_distill_imports_xsimd)
