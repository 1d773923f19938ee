// distill/detail/warnings_pop.hpp - included last by every public header that includes
// warnings_push.hpp, which says why. No include guard: it is meant to be included once per such header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
