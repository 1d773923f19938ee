// Trains many students at once: each job is one student (a transfer set, a loss, a seed), the jobs
// are spread over the threads, and each reports what its phase asks for (validation accuracy for the
// tuning runs; test curves, logits and the trained network for the reported runs).
#pragma once

#include "dataset.hpp"
#include "matrix.hpp"
#include "mlp.hpp"
#include "objective.hpp"
#include "splits.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace demo {

// The images and labels a student trains on, all drawn from the pool (the training file minus the
// validation split).
enum class transfer_set {
    labelled_subset,         // the seed's class-balanced labelled subset (1,000 images by default)
    subset_and_unlabelled,   // the whole pool, labels kept on the subset only
    all_labelled,            // the whole pool with every label
    without_class,           // the whole pool minus every image of one class (Hinton's omitted 3)
};

struct training_job {
    transfer_set set = transfer_set::labelled_subset;
    bool distilled = false;  // false: cross-entropy with the labels, the teacher unused
    // without_class + distilled trains on the teacher's soft targets alone: no label reaches it.
    loss_recipe loss;
    std::int64_t omitted_class = -1;  // without_class only
    int seed = 0;
    float dropout = -1;  // the student's dropout; < 0: the phase's (student_plan::dropout)
};

// What every job of a phase shares.
struct student_plan {
    int hidden = 32;
    float dropout = 0.2f;
    int epochs = 5;
    int batch_size = 128;
    float learning_rate = 2e-3f;
    float weight_decay = 1e-4f;
};

struct job_outcome {
    double validation_accuracy = 0;  // percent, after the last epoch
    std::vector<double> test_curve;  // test accuracy after each epoch (reported runs only)
    matrix validation_logits;        // reported runs and the omitted-class tuning only
    matrix test_logits;              // reported runs only
    std::shared_ptr<const mlp> model;  // reported runs only
    double seconds = 0;              // wall time of the training
};

// The data every job reads; `teacher_logits` are the teacher's outputs for every row of the training
// file (null before the teacher exists: hard-label jobs only).
struct job_context {
    const fashion_mnist* data = nullptr;
    const data_split* split = nullptr;
    const labelled_images* validation = nullptr;
    const matrix* teacher_logits = nullptr;
    int labelled = 1000;
    int threads = 1;
};

enum class evaluation {
    validation,            // tuning: validation accuracy only
    validation_logits,     // tuning that post-processes the outputs (the omitted class's bias)
    report,                // reported runs: the test curve, test and validation logits, the network
};

// Runs the jobs `threads` at a time behind one progress bar named `phase`. Everything random in a
// job derives from its seed alone, so the hard-label and distilled students of a seed share their
// labelled images, initial weights, batch order and dropout draws, and the results do not depend on
// the thread count.
std::vector<job_outcome> run_jobs(const job_context& context, const student_plan& plan,
                                  const std::vector<training_job>& jobs, const std::string& phase, evaluation what);

// The rows and labels a job trains on (labels: one per training-file row, no_label where withheld).
struct job_rows {
    std::vector<std::int64_t> rows;
    std::vector<std::int64_t> labels;
};
job_rows rows_for(const job_context& context, const training_job& job, const std::vector<std::int64_t>& subset);

}  // namespace demo
