#include "omitted_class.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <vector>

namespace demo {
namespace {

// max_{k != omitted} z_k, and its index.
std::pair<float, Eigen::Index> best_other(const matrix& logits, Eigen::Index row, Eigen::Index omitted) {
    float best = -std::numeric_limits<float>::infinity();
    Eigen::Index at = omitted == 0 ? 1 : 0;
    for (Eigen::Index k = 0; k < logits.cols(); ++k)
        if (k != omitted && logits(row, k) > best) {
            best = logits(row, k);
            at = k;
        }
    return {best, at};
}

}  // namespace

bias_shift_choice choose_bias_shift(const matrix& logits, std::span<const std::int64_t> labels, std::int64_t omitted) {
    const Eigen::Index n = logits.rows();
    if (n == 0 || static_cast<std::size_t>(n) != labels.size())
        throw std::invalid_argument("choose_bias_shift: one label per row, at least one row");
    // With shift s, row i predicts the omitted class when s > margin_i (argmax takes the first
    // maximum, so ties go to the smaller class index; the sweep's midpoints never land on a tie).
    // Below its margin the row is right when its best other class is its label; above, when its
    // label is the omitted class: the change in correct rows when s passes margin_i is `delta`.
    struct event {
        double margin;
        int delta;
    };
    std::vector<event> events;
    std::int64_t correct = 0;  // at s = 0
    for (Eigen::Index i = 0; i < n; ++i) {
        const auto [other, at] = best_other(logits, i, omitted);
        const double margin = double{other} - double{logits(i, omitted)};
        const bool right_below = labels[static_cast<std::size_t>(i)] == at;
        const bool right_above = labels[static_cast<std::size_t>(i)] == omitted;
        if (margin < 0) {
            correct += right_above;  // already predicts the omitted class at s = 0
        } else {
            correct += right_below;
            if (right_above != right_below) events.push_back({margin, right_above ? 1 : -1});
        }
    }
    std::sort(events.begin(), events.end(), [](const event& a, const event& b) { return a.margin < b.margin; });

    std::int64_t best_correct = correct;
    double best_shift = 0;
    std::int64_t running = correct;
    for (std::size_t e = 0; e < events.size();) {
        // Every event at the same margin flips together.
        const double margin = events[e].margin;
        for (; e < events.size() && events[e].margin == margin; ++e) running += events[e].delta;
        if (running > best_correct) {
            best_correct = running;
            best_shift = e < events.size() ? 0.5 * (margin + events[e].margin) : margin + 1.0;
        }
    }
    return {best_shift, 100.0 * static_cast<double>(best_correct) / static_cast<double>(n)};
}

error_counts count_errors(const matrix& logits, std::span<const std::int64_t> labels, std::int64_t omitted,
                          double shift) {
    error_counts out;
    for (Eigen::Index i = 0; i < logits.rows(); ++i) {
        Eigen::Index predicted = 0;
        float best = -std::numeric_limits<float>::infinity();
        for (Eigen::Index k = 0; k < logits.cols(); ++k) {
            const float z = logits(i, k) + (k == omitted ? static_cast<float>(shift) : 0.0f);
            if (z > best) {
                best = z;
                predicted = k;
            }
        }
        const auto label = labels[static_cast<std::size_t>(i)];
        const bool wrong = predicted != label;
        out.overall += wrong;
        out.omitted_rows += label == omitted;
        out.omitted += wrong && label == omitted;
    }
    return out;
}

}  // namespace demo
