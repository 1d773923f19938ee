// Must not compile: a matrix_ref<const T> is read-only and is refused as an output (gradient buffer
// or softmax output) by a static_assert. The tests plain_buffer_const_output_refused_* build this file
// and passes when the compiler prints that static_assert's message.
#include <distill/distill.hpp>

int main() {
    const float logits[6] = {0, 1, 2, 3, 4, 5};
    float grad[6] = {};
    const distill::matrix_ref<const float> s{logits, 2, 3};
    const distill::matrix_ref<const float> read_only{grad, 2, 3};
#if defined(DISTILL_COMPILE_FAIL_SOFTMAX)
    distill::softmax(s, read_only);
#else
    distill::kl_divergence<float>().loss_and_grad(s, s, read_only);
#endif
    return 0;
}
