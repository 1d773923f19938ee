// distill/executor.hpp - who runs the rows: the caller's thread pool, never ours.
//
// An executor is any callable `exec(begin, end, fn)` that calls `fn(b, e)` on disjoint sub-ranges
// covering [begin, end), possibly concurrently, and returns when all are done. That is the shape of
// at::parallel_for (with a grain size bound in), of TBB's parallel_for over a blocked_range, and of
// Eigen::ThreadPoolDevice::parallelFor, so a trainer keeps its own pool. The library cuts the work
// into a fixed number of pieces that does not depend on the executor, which keeps results bitwise
// identical for any thread count.
#pragma once

#include <concepts>
#include <cstddef>
#include <type_traits>

namespace distill {

namespace detail {
struct range_probe {
    void operator()(std::ptrdiff_t, std::ptrdiff_t) const noexcept {}
};
}  // namespace detail

// Eigen's rank-3 tensors are callable with three indices too: anything with a Scalar type is data,
// never an executor, which keeps `loss(exec, ...)` and `loss(student, ...)` apart.
template <class E>
concept executor = std::invocable<E&, std::ptrdiff_t, std::ptrdiff_t, const detail::range_probe&> &&
                   !requires { typename std::remove_cvref_t<E>::Scalar; };

// Runs everything on the calling thread.
struct sequential_executor {
    template <class Fn>
    void operator()(std::ptrdiff_t begin, std::ptrdiff_t end, Fn&& fn) const {
        if (begin < end) fn(begin, end);
    }
};
inline constexpr sequential_executor sequential{};

#if defined(_OPENMP)
// OpenMP's threads, one piece per iteration. Defined when the consumer compiles with OpenMP.
struct openmp_executor {
    template <class Fn>
    void operator()(std::ptrdiff_t begin, std::ptrdiff_t end, Fn&& fn) const {
#pragma omp parallel for schedule(static)
        for (std::ptrdiff_t i = begin; i < end; ++i) fn(i, i + 1);
    }
};
inline constexpr openmp_executor openmp{};
#endif

}  // namespace distill
