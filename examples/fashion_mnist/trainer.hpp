// The training loop: minibatches, the objective, backward, AdamW, a cosine learning-rate schedule,
// and, when asked, an evaluation after every epoch (the accuracy curves of the plot).
#pragma once

#include "dataset.hpp"
#include "matrix.hpp"
#include "mlp.hpp"
#include "objective.hpp"
#include "random.hpp"

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace demo {

struct schedule {
    // An epoch is `epoch_samples` training samples seen, whatever the size of the model's training
    // set: every student takes the same number of optimiser steps at the same learning rates, so a
    // student on 1,000 images is not handed 60 times fewer updates than one on 60,000.
    int epochs = 10;
    std::int64_t epoch_samples = 60000;
    int batch_size = 128;
    float learning_rate = 1e-3f;
    float weight_decay = 0.0f;
};

// Optimiser steps in the whole schedule (every epoch rounds its last batch up).
inline std::int64_t total_steps(const schedule& plan) {
    return plan.epochs * ((plan.epoch_samples + plan.batch_size - 1) / plan.batch_size);
}

// What a model trains on: rows `rows` of `x`. labels[i] is row i's class, or no_label where the
// label is withheld; teacher_logits (rows of x, or null for a model without a teacher) are the
// teacher's outputs for the same images, computed once in inference mode.
struct training_rows {
    const matrix* x = nullptr;
    std::span<const std::int64_t> labels;
    const matrix* teacher_logits = nullptr;
    std::vector<std::int64_t> rows;
};

struct epoch_summary {
    int epoch = 0;             // 1-based, the epoch in progress or just finished
    int epochs = 0;
    bool epoch_finished = false;  // false: a report from inside the epoch, to move a progress bar
    std::int64_t step = 0;     // steps done so far, out of total_steps
    std::int64_t total_steps = 0;
    double train_loss = 0;     // mean over the epoch's batches
    double accuracy = -1;      // percent on the monitored images after the last finished epoch; -1: none yet
};

// Called after every epoch and every 64 steps; may be called from several training threads at once.
using progress_callback = std::function<void(const epoch_summary&)>;

// Trains `net`. With `monitor`, returns its accuracy (percent) after each epoch; without, an empty
// curve and no evaluation cost (the tuning runs need only their final validation accuracy).
std::vector<double> train(mlp& net, const objective& loss, const schedule& plan, const training_rows& data,
                          const labelled_images* monitor, random_source rng, const progress_callback& report);

// Percent of rows whose largest logit is the label.
double accuracy(const matrix& logits, std::span<const std::int64_t> labels);

}  // namespace demo
