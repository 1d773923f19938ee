// Offline distillation from a teacher's top-k log-probabilities, the way language-model pipelines
// keep a teacher: run it once, store its k most likely tokens per position with their
// log-probabilities, and train the student later from the file alone.
//
// The file (written and read below; little-endian, as on every machine distill targets):
//     8 bytes  magic "DTOPK001"
//     u64      rows, k, vocabulary
//     f64      temperature the log-probabilities were taken at (log_softmax(teacher logits / T))
//     i32      rows x k class indices, row by row (-1: padding, a row with fewer classes)
//     bf16     rows x k log-probabilities, row by row (the upper 16 bits of the float)
//
// The student here is a linear softmax model over fixed features, trained by plain gradient descent
// with top_k_distillation_loss (tail_bucket: the teacher's mass outside its k tokens is one more
// category) in bfloat16, as language models train: bf16 logits and log-probabilities in, the
// gradient written in float for the float master weights. The example checks that the student learns the teacher's whole distribution (its KL
// to the teacher over the full vocabulary falls), and prints the memory the file saves against the
// dense teacher.
#include <distill/distill.hpp>
#include <distill/top_k_distillation_loss.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using index_matrix = Eigen::Matrix<std::int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using bf16 = Eigen::bfloat16;
using bf16_matrix = Eigen::Matrix<bf16, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr Eigen::Index tokens = 1024, features = 32, vocab = 8192, top = 20, batch = 128;
constexpr double temperature = 2.0;

struct top_k_file {
    std::uint64_t rows = 0, k = 0, vocabulary = 0;
    double temperature = 0;
    index_matrix indices;
    bf16_matrix log_probs;
};

void write(const std::string& path, const top_k_file& f) {
    std::ofstream out(path, std::ios::binary);
    out.write("DTOPK001", 8);
    for (std::uint64_t v : {f.rows, f.k, f.vocabulary}) out.write(reinterpret_cast<const char*>(&v), sizeof v);
    out.write(reinterpret_cast<const char*>(&f.temperature), sizeof f.temperature);
    out.write(reinterpret_cast<const char*>(f.indices.data()), static_cast<std::streamsize>(sizeof(std::int32_t) * f.indices.size()));
    out.write(reinterpret_cast<const char*>(f.log_probs.data()), static_cast<std::streamsize>(sizeof(bf16) * f.log_probs.size()));
}

bool read(const std::string& path, top_k_file& f) {
    std::ifstream in(path, std::ios::binary);
    char magic[8];
    if (!in.read(magic, 8) || std::memcmp(magic, "DTOPK001", 8) != 0) return false;
    for (std::uint64_t* v : {&f.rows, &f.k, &f.vocabulary}) in.read(reinterpret_cast<char*>(v), sizeof *v);
    in.read(reinterpret_cast<char*>(&f.temperature), sizeof f.temperature);
    f.indices.resize(static_cast<Eigen::Index>(f.rows), static_cast<Eigen::Index>(f.k));
    f.log_probs.resize(static_cast<Eigen::Index>(f.rows), static_cast<Eigen::Index>(f.k));
    in.read(reinterpret_cast<char*>(f.indices.data()), static_cast<std::streamsize>(sizeof(std::int32_t) * f.indices.size()));
    in.read(reinterpret_cast<char*>(f.log_probs.data()), static_cast<std::streamsize>(sizeof(bf16) * f.log_probs.size()));
    return static_cast<bool>(in);
}

// The teacher's run: its log-probabilities at T over the whole vocabulary, of which the file keeps
// the top k per row.
top_k_file top_k_of(const matrix& teacher_log_probs) {
    top_k_file f{static_cast<std::uint64_t>(teacher_log_probs.rows()), top, vocab, temperature, {}, {}};
    f.indices.resize(teacher_log_probs.rows(), top);
    f.log_probs.resize(teacher_log_probs.rows(), top);
    std::vector<std::int32_t> order(vocab);
    for (Eigen::Index i = 0; i < teacher_log_probs.rows(); ++i) {
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + top, order.end(),
                          [&](std::int32_t a, std::int32_t b) { return teacher_log_probs(i, a) > teacher_log_probs(i, b); });
        for (Eigen::Index j = 0; j < top; ++j) {
            f.indices(i, j) = order[static_cast<std::size_t>(j)];
            f.log_probs(i, j) = bf16(teacher_log_probs(i, order[static_cast<std::size_t>(j)]));
        }
    }
    return f;
}

// Mean KL(teacher || student) over the whole vocabulary at T: what the top-k file cannot show.
double full_kl(const matrix& teacher_log_probs, const matrix& student_logits) {
    const distill::kl_divergence<float> kl({.temperature = temperature, .scale_by_t_squared = false,
                                            .teacher = distill::teacher_input::log_probabilities});
    return kl.loss(student_logits, teacher_log_probs).total;
}

}  // namespace

int main() {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    matrix x(tokens, features), teacher_weights(features, vocab), student_weights = matrix::Zero(features, vocab);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
    for (Eigen::Index i = 0; i < teacher_weights.size(); ++i) teacher_weights.data()[i] = 1.2f * normal(rng);

    // 1. The teacher runs once; its top-k goes to a file.
    const matrix teacher_log_probs = distill::log_softmax(matrix(x * teacher_weights), temperature);
    const std::string path = "offline_topk_teacher.bin";
    write(path, top_k_of(teacher_log_probs));

    // 2. Training reads the file alone.
    top_k_file f;
    if (!read(path, f) || f.vocabulary != static_cast<std::uint64_t>(vocab)) {
        std::fprintf(stderr, "could not read %s back\n", path.c_str());
        return 1;
    }
    // bf16 log-probabilities carry 8 significant bits: their top-k mass may read up to about 1% above
    // 1, which the tolerance must allow (docs/api.md).
    const distill::top_k_distillation_loss<bf16> kd(
        {.temperature = f.temperature, .alpha = 1.0, .teacher = distill::teacher_input::log_probabilities},
        {.mode = distill::top_k_mode::tail_bucket, .mass_tolerance = 0.02});
    const double before = full_kl(teacher_log_probs, x * student_weights);
    bf16_matrix logits(batch, vocab);
    matrix grad(batch, vocab);  // the gradient in float: the caller's buffer decides
    const float learning_rate = 40.0f;
    double last = 0;
    for (int epoch = 0; epoch < 25; ++epoch) {
        double epoch_loss = 0;
        for (Eigen::Index b = 0; b < tokens; b += batch) {
            const auto xb = x.middleRows(b, batch);
            logits = (xb * student_weights).cast<bf16>();  // the student's forward pass in bf16
            const index_matrix indices = f.indices.middleRows(b, batch);
            const bf16_matrix values = f.log_probs.middleRows(b, batch);
            epoch_loss += kd.loss_and_grad(logits, distill::top_k(indices, values), distill::no_labels, grad).total;
            student_weights.noalias() -= learning_rate * (xb.transpose() * grad);  // dL/dW = x^T dL/ds
        }
        last = epoch_loss / (tokens / batch);
        if (epoch % 5 == 0 || epoch == 24) std::printf("epoch %2d  top-k loss %.4f\n", epoch, last);
    }
    const double after = full_kl(teacher_log_probs, x * student_weights);

    const double dense_bytes = static_cast<double>(tokens) * vocab * sizeof(float);
    const double file_bytes = static_cast<double>(tokens) * top * (sizeof(std::int32_t) + sizeof(bf16));
    std::printf("KL(teacher || student) over all %lld classes at T = %g: %.4f before, %.4f after\n",
                static_cast<long long>(vocab), temperature, before, after);
    std::printf("teacher storage: dense %.1f MiB, top-%lld %.2f MiB (%.0fx smaller)\n", dense_bytes / (1 << 20),
                static_cast<long long>(top), file_bytes / (1 << 20), dense_bytes / file_bytes);
    std::remove(path.c_str());
    // The student must have learnt the teacher's distribution from its top k alone.
    return after < 0.5 * before ? 0 : 1;
}
