// Data-parallel distillation with MPI: each rank holds a quarter of the batch's sequences, with
// uneven padding, and runs its rows in two micro-batches (gradient accumulation).
//
// The per-token mean must divide by the real tokens of the whole batch, which no rank sees. So each
// rank counts its rows before any loss (distill::counted_rows), one all-reduce adds the counts, and
// every micro-batch on every rank divides by that global count (reduction::divide_by). The ranks'
// losses and gradients then add up to those of one rank over the whole batch with reduction::mean.
//
// Checked here: the summed loss equals the one-rank loss (within rounding of the sum's order) and
// the gradient rows are the same bits (the same rows through the same kernels with the same weight,
// micro-batches of at least 64 rows so that each row runs whole, as in the one-rank call). Printed,
// for contrast: the average of each rank's own mean, which weighs the tokens of short sequences more.
//
// Run: mpirun -np 4 ./mpi_data_parallel (ctest adds --oversubscribe and shared memory only).
#include <distill/distill.hpp>

#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <span>
#include <vector>

namespace {

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr Eigen::Index rows_per_rank = 128;  // tokens per rank: two micro-batches of 64
constexpr Eigen::Index micro_batches = 2;
constexpr Eigen::Index vocab = 4000;

}  // namespace

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, ranks = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);

    // The whole batch, the same on every rank (a stand-in for the data loader): rank k's rows are
    // [k * rows_per_rank, (k + 1) * rows_per_rank), and its real tokens fall with k.
    const Eigen::Index N = rows_per_rank * ranks;
    std::mt19937 rng(3);
    std::normal_distribution<float> noise(0.0f, 1.0f);
    std::uniform_int_distribution<std::int64_t> any_token(0, vocab - 1);
    matrix student(N, vocab), teacher(N, vocab);
    for (Eigen::Index i = 0; i < teacher.size(); ++i) teacher.data()[i] = 3.0f * noise(rng);
    for (Eigen::Index i = 0; i < student.size(); ++i) student.data()[i] = 0.6f * teacher.data()[i] + noise(rng);
    std::vector<std::int64_t> labels(static_cast<std::size_t>(N));
    for (Eigen::Index i = 0; i < N; ++i) {
        const Eigen::Index real = rows_per_rank - 25 * (i / rows_per_rank);  // padding grows with the rank
        labels[static_cast<std::size_t>(i)] = i % rows_per_rank < real ? any_token(rng) : -100;
    }

    const Eigen::Index first = rank * rows_per_rank;
    const std::span<const std::int64_t> my_labels(labels.data() + first, rows_per_rank);

    // 1. The global normaliser: rows counted on every rank, all-reduced, before any loss.
    std::int64_t global_rows = distill::counted_rows(my_labels);
    MPI_Allreduce(MPI_IN_PLACE, &global_rows, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);

    // 2. Every micro-batch divides by it. (A framework that averages gradients over ranks, as
    //    PyTorch's DistributedDataParallel does, divides by R once more: pass global_rows / R there.)
    const distill::distillation_options recipe{.temperature = 2.0, .alpha = 0.5};
    distill::distillation_options global = recipe;
    global.reduce = distill::reduction::divide_by;
    global.normalizer = static_cast<double>(std::max<std::int64_t>(global_rows, 1));  // 0 rows: the loss is 0 anyway
    const distill::distillation_loss<float> kd(global);

    matrix my_grad(rows_per_rank, vocab);
    double my_loss = 0, my_own_mean = 0;
    const Eigen::Index micro_rows = rows_per_rank / micro_batches;
    for (Eigen::Index m = 0; m < micro_batches; ++m) {
        const Eigen::Index row = first + m * micro_rows;
        const Eigen::Ref<const matrix> s = student.middleRows(row, micro_rows), t = teacher.middleRows(row, micro_rows);
        Eigen::Ref<matrix> g = my_grad.middleRows(m * micro_rows, micro_rows);
        my_loss += kd.loss_and_grad(s, t, my_labels.subspan(static_cast<std::size_t>(m * micro_rows), micro_rows), g).total;
    }
    // The mistake, for contrast: this rank's own mean (then averaged over ranks).
    my_own_mean = distill::distillation_loss<float>(recipe)
                      .loss(student.middleRows(first, rows_per_rank), teacher.middleRows(first, rows_per_rank), my_labels)
                      .total;

    double loss = 0, mean_of_means = 0;
    MPI_Reduce(&my_loss, &loss, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&my_own_mean, &mean_of_means, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    mean_of_means /= ranks;
    matrix grad(rank == 0 ? N : 0, vocab);
    MPI_Gather(my_grad.data(), static_cast<int>(my_grad.size()), MPI_FLOAT, grad.data(),
               static_cast<int>(my_grad.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);

    int good = 1;
    if (rank == 0) {
        matrix grad_one(N, vocab);
        const distill::loss_value one = distill::distillation_loss<float>(recipe).loss_and_grad(student, teacher, labels, grad_one);
        const bool same_bits = std::memcmp(grad.data(), grad_one.data(), sizeof(float) * static_cast<std::size_t>(grad.size())) == 0;
        const double loss_error = std::abs(loss - one.total) / std::abs(one.total);
        good = global_rows == one.rows_counted && loss_error <= 1e-12 && same_bits;
        std::printf("%d ranks x %lld rows (2 micro-batches each) x %lld classes, %lld real tokens in all\n", ranks,
                    static_cast<long long>(rows_per_rank), static_cast<long long>(vocab),
                    static_cast<long long>(global_rows));
        std::printf("sum over ranks, divide_by %lld  : %.9f\n", static_cast<long long>(global_rows), loss);
        std::printf("one rank, whole batch, mean     : %.9f  (relative difference %.1e)\n", one.total, loss_error);
        std::printf("mean of the ranks' own means    : %.9f  (wrong: short sequences weigh more)\n", mean_of_means);
        std::printf("gradient rows bitwise equal     : %s\n", same_bits ? "yes" : "NO");
        std::printf("%s\n", good ? "4 ranks equal 1 rank" : "MISMATCH");
    }
    MPI_Bcast(&good, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    return good ? 0 : 1;
}
