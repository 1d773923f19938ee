// The suite's input data, shared by distill_bench and distill_count: generated once per shape,
// deterministic, every buffer written before any timed loop.
#include "bench_common.hpp"

#include <sstream>

namespace distill_bench {

std::string format_temperature(double t) {
    std::ostringstream os;
    os << t;
    return os.str();
}

namespace {

// Deterministic, fast fill (16M elements in well under a second): logits spread over [-8, 8), the
// teacher correlated with the student like a trained pair, labels uniform over the classes.
template <class Scalar>
void fill(inputs<Scalar>& in, std::ptrdiff_t rows, std::ptrdiff_t cols) {
    std::uint64_t state = 0x9e3779b97f4a7c15ull ^ static_cast<std::uint64_t>(rows * 131 + cols);
    auto next = [&state] { // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        return state * 0x2545f4914f6cdd1dull;
    };
    auto uniform = [&] { return static_cast<double>(next() >> 11) * 0x1.0p-53; };
    in.student.resize(rows, cols);
    in.teacher.resize(rows, cols);
    in.out.resize(rows, cols);
    for (std::ptrdiff_t i = 0; i < rows; ++i)
        for (std::ptrdiff_t j = 0; j < cols; ++j) {
            const double s = 16.0 * uniform() - 8.0;
            in.student(i, j) = static_cast<Scalar>(s);
            in.teacher(i, j) = static_cast<Scalar>(0.75 * s + 4.0 * uniform() - 2.0);
        }
    in.out.setZero();
    in.labels.resize(static_cast<std::size_t>(rows));
    for (auto& y : in.labels) y = static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(cols));
}

} // namespace

template <class Scalar>
inputs<Scalar>& inputs_for(std::ptrdiff_t rows, std::ptrdiff_t cols) {
    static inputs<Scalar> cached;
    if (cached.student.rows() != rows || cached.student.cols() != cols) {
        cached = inputs<Scalar>{}; // release the previous shape first
        fill(cached, rows, cols);
    }
    return cached;
}

template inputs<float>& inputs_for<float>(std::ptrdiff_t, std::ptrdiff_t);
template inputs<double>& inputs_for<double>(std::ptrdiff_t, std::ptrdiff_t);

} // namespace distill_bench
