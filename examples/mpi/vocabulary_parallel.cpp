// Vocabulary-parallel distillation with MPI: each rank holds a quarter of the vocabulary's columns
// (as a tensor-parallel LM head produces them) and never sees the other ranks' logits. The ranks
// exchange one 13-double record per row (and, for divergences other than forward KL, 4 doubles
// more), and each gets the whole loss and its own columns of the gradient.
//
// Checked here: for every divergence of the family, the loss and the gradient over 4 ranks equal
// those of distillation_loss on one rank holding the whole vocabulary (float, within the tolerances
// of tests/sharded.test.cpp); and every rank gets the same loss, to the bit. Printed: the bytes each
// rank sends per row, next to what gathering the logits would cost.
//
// Run: mpirun -np 4 ./mpi_vocabulary_parallel (ctest adds --oversubscribe and shared memory only).
#include <distill/distill.hpp>

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <span>
#include <vector>

namespace {

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr Eigen::Index tokens = 48;     // rows: one micro-batch of tokens
constexpr Eigen::Index vocab = 32000;   // the whole vocabulary, over all ranks

// The MPI reduction: inout[i] = merge(in[i], inout[i]). merge_row_statistics is commutative to the
// bit, so the reduction may pair records in any order (MPI_Op_create's commute = 1).
void merge_records(void* in, void* inout, int* count, MPI_Datatype*) {
    const auto* a = static_cast<const distill::row_statistics*>(in);
    auto* b = static_cast<distill::row_statistics*>(inout);
    for (int i = 0; i < *count; ++i) b[i] = distill::merge_row_statistics(a[i], b[i]);
}

// The same batch on every rank (a stand-in for the models' outputs): a teacher with a few confident
// tokens per row, a student that roughly agrees, and labels with some padding.
void make_batch(matrix& student, matrix& teacher, std::vector<std::int64_t>& labels) {
    std::mt19937 rng(7);
    std::normal_distribution<float> noise(0.0f, 1.0f);
    std::uniform_int_distribution<std::int64_t> any_token(0, vocab - 1);
    teacher.resize(tokens, vocab);
    student.resize(tokens, vocab);
    for (Eigen::Index i = 0; i < teacher.size(); ++i) teacher.data()[i] = 2.0f * noise(rng);
    labels.resize(tokens);
    for (Eigen::Index i = 0; i < tokens; ++i) {
        for (int k = 0; k < 4; ++k) teacher(i, any_token(rng)) += 10.0f;
        labels[static_cast<std::size_t>(i)] = i % 11 == 10 ? -100 : any_token(rng);
    }
    for (Eigen::Index i = 0; i < student.size(); ++i) student.data()[i] = 0.7f * teacher.data()[i] + noise(rng);
}

struct recipe {
    const char* name;
    distill::divergence divergence;
};

}  // namespace

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, ranks = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);

    // This rank's columns: [first, first + width), the vocabulary cut as evenly as it goes.
    const std::int64_t first = vocab * rank / ranks, width = vocab * (rank + 1) / ranks - first;
    matrix student, teacher;
    std::vector<std::int64_t> labels;
    make_batch(student, teacher, labels);
    const matrix my_student = student.middleCols(first, width), my_teacher = teacher.middleCols(first, width);

    // A record is 13 doubles on the wire; the sums are plain doubles, added by MPI_SUM.
    MPI_Datatype record;
    MPI_Type_contiguous(sizeof(distill::row_statistics) / sizeof(double), MPI_DOUBLE, &record);
    MPI_Type_commit(&record);
    MPI_Op merge;
    MPI_Op_create(&merge_records, /*commute=*/1, &merge);

    const recipe recipes[] = {
        {"forward_kl", distill::forward_kl{}},
        {"reverse_kl", distill::reverse_kl{}},
        {"jensen_shannon", distill::jensen_shannon{.beta = 0.5}},
        {"skew_kl", distill::skew_kl{.skew = 0.1}},
        {"skew_reverse_kl", distill::skew_reverse_kl{.skew = 0.1}},
        {"total_variation", distill::total_variation{}},
        {"decoupled_kd", distill::decoupled_kd{}},
    };
    bool all_good = true;
    if (rank == 0)
        std::printf("%lld tokens x %lld classes over %d ranks (%lld columns each), float\n\n", static_cast<long long>(tokens),
                    static_cast<long long>(vocab), ranks, static_cast<long long>(width));
    for (const recipe& r : recipes) {
        const distill::distillation_options options{.temperature = 2.0, .alpha = 0.5, .label_smoothing = 0.1,
                                                    .divergence = r.divergence};
        const distill::sharded_loss<float> kd(options, {.first_column = first, .vocabulary = vocab});

        // 1. Statistics of this rank's columns, merged across ranks.
        std::vector<distill::row_statistics> stats(tokens);
        kd.statistics(my_student, my_teacher, labels, std::span(stats));
        MPI_Allreduce(MPI_IN_PLACE, stats.data(), static_cast<int>(tokens), record, merge, MPI_COMM_WORLD);

        // 2. The divergence's sums, where it needs them: every rank decides alike from the same records.
        std::vector<distill::row_sums> sums;
        const bool second_reduction = kd.needs_sums(stats);
        if (second_reduction) {
            sums.resize(tokens);
            kd.sums(my_student, my_teacher, labels, std::span<const distill::row_statistics>(stats), std::span(sums));
            MPI_Allreduce(MPI_IN_PLACE, sums.data(), static_cast<int>(tokens * 4), MPI_DOUBLE, MPI_SUM,
                          MPI_COMM_WORLD);
        }

        // 3. The whole loss, and this rank's columns of the gradient.
        matrix my_grad(tokens, width);
        const distill::loss_value v =
            kd.loss_and_grad(my_student, my_teacher, labels, std::span<const distill::row_statistics>(stats),
                             std::span<const distill::row_sums>(sums), my_grad);

        // Check: every rank has the same loss bits; rank 0 gathers the gradient and compares with one rank.
        double lowest = v.total, highest = v.total;
        MPI_Allreduce(MPI_IN_PLACE, &lowest, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, &highest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        std::vector<int> counts(static_cast<std::size_t>(ranks)), offsets(static_cast<std::size_t>(ranks));
        for (int k = 0; k < ranks; ++k) {
            const std::int64_t f = vocab * k / ranks, w = vocab * (k + 1) / ranks - f;
            counts[static_cast<std::size_t>(k)] = static_cast<int>(tokens * w);
            offsets[static_cast<std::size_t>(k)] = static_cast<int>(tokens * f);
        }
        std::vector<float> gathered(rank == 0 ? static_cast<std::size_t>(tokens * vocab) : 0);
        MPI_Gatherv(my_grad.data(), static_cast<int>(my_grad.size()), MPI_FLOAT, gathered.data(), counts.data(),
                    offsets.data(), MPI_FLOAT, 0, MPI_COMM_WORLD);
        if (rank == 0) {
            matrix grad_one(tokens, vocab);
            const distill::loss_value one =
                distill::distillation_loss<float>(options).loss_and_grad(student, teacher, labels, grad_one);
            double worst = 0;
            for (int k = 0; k < ranks; ++k) {  // rank k's block is its tokens x w columns, row-major
                const std::int64_t f = vocab * k / ranks, w = vocab * (k + 1) / ranks - f;
                const float* block = gathered.data() + offsets[static_cast<std::size_t>(k)];
                for (Eigen::Index i = 0; i < tokens; ++i)
                    for (std::int64_t c = 0; c < w; ++c)
                        worst = std::max(worst, std::abs(double(block[i * w + c]) - double(grad_one(i, f + c))));
            }
            // The tolerances of tests/sharded.test.cpp: a loss within 1e-5 relative, a gradient within
            // 2e-6 of its scale alpha T + (1 - alpha), over the rows counted (mean).
            const double grad_scale = (0.5 * 2.0 + 0.5) / static_cast<double>(one.rows_counted);
            const double loss_error = std::abs(v.total - one.total) / std::max(1.0, std::abs(one.total));
            const bool good = lowest == highest && loss_error <= 1e-5 && worst <= 2e-6 * grad_scale;
            all_good = all_good && good;
            std::printf("%-16s loss %.7f (one rank %.7f, relative difference %.1e), gradient max difference %.1e "
                        "(%.1e of its scale), %s reduction%s, same loss on every rank: %s  %s\n",
                        r.name, v.total, one.total, loss_error, worst, worst / grad_scale,
                        second_reduction ? "2" : "1", second_reduction ? "s" : " ", lowest == highest ? "yes" : "NO",
                        good ? "ok" : "FAILED");
        }
    }

    if (rank == 0) {
        // What each rank puts on the wire per row, against an all-gather of the logits.
        const double stats_bytes = sizeof(distill::row_statistics), sums_bytes = sizeof(distill::row_sums);
        const double ring = 2.0 * (ranks - 1) / ranks;  // a ring all-reduce sends 2 (R - 1) / R of the payload
        const double gather_logits = 2.0 * static_cast<double>(width) * sizeof(float) * (ranks - 1);
        std::printf("\nbytes each rank sends per row:\n");
        std::printf("  statistics record        %4.0f B payload (ring all-reduce: %.0f B sent)\n", stats_bytes,
                    ring * stats_bytes);
        std::printf("  + sums (not forward KL)  %4.0f B payload (ring all-reduce: %.0f B sent)\n", sums_bytes,
                    ring * sums_bytes);
        std::printf("  all-gather of the logits instead: its %lld student and teacher logits to %d ranks = %.0f B "
                    "(%.0fx the two records)\n",
                    static_cast<long long>(width), ranks - 1, gather_logits,
                    gather_logits / (ring * (stats_bytes + sums_bytes)));
        std::printf("\n%s\n", all_good ? "every divergence: 4 ranks equal 1 rank" : "MISMATCH");
    }
    MPI_Op_free(&merge);
    MPI_Type_free(&record);
    int good = all_good ? 1 : 0;
    MPI_Bcast(&good, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    return good ? 0 : 1;
}
