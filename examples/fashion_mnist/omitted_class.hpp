// Hinton, Vinyals & Dean (2015), section 3: a student that never saw a class in its transfer set can
// still recognise it from the teacher's soft targets on the other classes, once the bias of that
// class's output, which training only ever pushed down, is raised by a value chosen on held-out data.
#pragma once

#include "matrix.hpp"

#include <cstdint>
#include <span>

namespace demo {

struct bias_shift_choice {
    double shift = 0;                // added to the omitted class's logit, >= 0
    double validation_accuracy = 0;  // percent, with the shift
};

// The shift >= 0 of column `omitted`'s logits that maximises the accuracy on (logits, labels), found
// exactly: a row's prediction changes only where the shift passes the row's margin
// max_{k != omitted} z_k - z_omitted, so a sweep over the sorted margins visits every distinct
// accuracy. The shift returned is the midpoint of the best interval between two margins (the
// smallest shift plus 1 when the best interval is unbounded), so it does not sit on a validation
// row's boundary. Ties go to the smaller shift.
bias_shift_choice choose_bias_shift(const matrix& logits, std::span<const std::int64_t> labels, std::int64_t omitted);

struct error_counts {
    std::int64_t overall = 0;   // rows whose prediction is wrong
    std::int64_t omitted = 0;   // of them, rows whose label is the omitted class
    std::int64_t omitted_rows = 0;  // rows whose label is the omitted class
};

// Errors of the predictions argmax(z + shift e_omitted).
error_counts count_errors(const matrix& logits, std::span<const std::int64_t> labels, std::int64_t omitted,
                          double shift);

}  // namespace demo
