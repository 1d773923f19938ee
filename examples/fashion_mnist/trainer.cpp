#include "trainer.hpp"

#include "adam.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace demo {
namespace {

// Cosine decay to zero (Loshchilov & Hutter 2017): large steps early, small ones at the end so the
// final weights are not a random point of a noisy walk. No restarts: one schedule, one result.
float cosine_learning_rate(float peak, std::int64_t step, std::int64_t total) {
    const double progress = static_cast<double>(step) / static_cast<double>(total);
    return static_cast<float>(peak * 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
}

// Hands out batches by walking a shuffled copy of the rows, reshuffling after each pass. A pass's
// last partial batch is dropped: a 1,000-image set would otherwise end each pass with a batch of 104.
class batch_sampler {
public:
    batch_sampler(std::vector<std::int64_t> rows, int batch_size, random_source rng)
        : rows_(std::move(rows)), batch_size_(std::min<std::size_t>(batch_size, rows_.size())), rng_(rng) {
        shuffle(rows_, rng_);
    }

    std::span<const std::int64_t> next() {
        if (position_ + batch_size_ > rows_.size()) {
            shuffle(rows_, rng_);
            position_ = 0;
        }
        const std::span<const std::int64_t> batch(rows_.data() + position_, batch_size_);
        position_ += batch_size_;
        return batch;
    }

private:
    std::vector<std::int64_t> rows_;
    std::size_t batch_size_;
    random_source rng_;
    std::size_t position_ = 0;
};

}  // namespace

double accuracy(const matrix& logits, std::span<const std::int64_t> labels) {
    std::int64_t correct = 0;
    for (Eigen::Index i = 0; i < logits.rows(); ++i) {
        Eigen::Index predicted = 0;
        logits.row(i).maxCoeff(&predicted);
        correct += predicted == labels[static_cast<std::size_t>(i)];
    }
    return 100.0 * static_cast<double>(correct) / static_cast<double>(logits.rows());
}

std::vector<double> train(mlp& net, const objective& loss, const schedule& plan, const training_rows& data,
                          const labelled_images* monitor, random_source rng, const progress_callback& report) {
    if (data.rows.empty()) throw std::invalid_argument("train: no training rows");
    if (loss.kind() != objective_kind::hard_labels && data.teacher_logits == nullptr)
        throw std::invalid_argument("train: a distillation objective needs the teacher's logits");

    adam optimiser(net, {.weight_decay = plan.weight_decay});
    batch_sampler sampler(data.rows, plan.batch_size, rng.split());
    random_source dropout_rng = rng.split();

    const std::int64_t steps = total_steps(plan);
    const std::int64_t steps_per_epoch = steps / plan.epochs;
    const Eigen::Index classes = net.sizes().back();

    // Per-batch buffers, reused: after the first step the loop allocates nothing but Eigen's GEMM blocks.
    std::vector<std::int64_t> order, labels;
    matrix x, teacher, grad;
    std::vector<double> accuracy_per_epoch;
    double loss_sum = 0;
    std::int64_t step = 0;

    for (int epoch = 1; epoch <= plan.epochs; ++epoch) {
        loss_sum = 0;
        for (std::int64_t s = 0; s < steps_per_epoch; ++s, ++step) {
            // Labelled rows first: the objective takes the labelled block and the unlabelled block as
            // two contiguous row ranges of the same logits matrix.
            const auto batch = sampler.next();
            order.assign(batch.begin(), batch.end());
            const auto first_unlabelled = std::stable_partition(
                order.begin(), order.end(), [&](std::int64_t r) { return data.labels[r] != no_label; });
            labels.clear();
            for (auto it = order.begin(); it != first_unlabelled; ++it) labels.push_back(data.labels[*it]);

            const auto n = static_cast<Eigen::Index>(order.size());
            x.resize(n, data.x->cols());
            for (Eigen::Index i = 0; i < n; ++i) x.row(i) = data.x->row(order[i]);
            if (data.teacher_logits != nullptr) {
                teacher.resize(n, classes);
                for (Eigen::Index i = 0; i < n; ++i) teacher.row(i) = data.teacher_logits->row(order[i]);
            }

            const matrix& logits = net.forward_train(x, dropout_rng);
            loss_sum += loss.loss_and_grad(logits, teacher, labels, grad).total;
            net.backward(grad);
            optimiser.step(cosine_learning_rate(plan.learning_rate, step, steps));

            if (report && s % 64 == 63)
                report({.epoch = epoch, .epochs = plan.epochs, .step = step + 1, .total_steps = steps,
                        .train_loss = loss_sum / static_cast<double>(s + 1),
                        .accuracy = accuracy_per_epoch.empty() ? -1.0 : accuracy_per_epoch.back()});
        }
        if (monitor != nullptr) accuracy_per_epoch.push_back(accuracy(net.predict(monitor->x), monitor->labels));
        if (report)
            report({.epoch = epoch, .epochs = plan.epochs, .epoch_finished = true, .step = step, .total_steps = steps,
                    .train_loss = loss_sum / static_cast<double>(steps_per_epoch),
                    .accuracy = accuracy_per_epoch.empty() ? -1.0 : accuracy_per_epoch.back()});
    }
    return accuracy_per_epoch;
}

}  // namespace demo
