#include "experiment.hpp"

#include "progress.hpp"
#include "random.hpp"
#include "trainer.hpp"

#include <chrono>
#include <exception>
#include <stdexcept>

namespace demo {

job_rows rows_for(const job_context& context, const training_job& job, const std::vector<std::int64_t>& subset) {
    const auto& all_labels = context.data->train.labels;
    job_rows out;
    switch (job.set) {
    case transfer_set::labelled_subset:
        out.rows = subset;
        out.labels = all_labels;
        break;
    case transfer_set::subset_and_unlabelled:
        out.rows = context.split->pool;
        out.labels.assign(all_labels.size(), no_label);
        for (const auto r : subset) out.labels[static_cast<std::size_t>(r)] = all_labels[static_cast<std::size_t>(r)];
        break;
    case transfer_set::all_labelled:
        out.rows = context.split->pool;
        out.labels = all_labels;
        break;
    case transfer_set::without_class:
        if (job.omitted_class < 0 || job.omitted_class >= class_count)
            throw std::invalid_argument("without_class needs a class in 0..9");
        out.rows = without_class(all_labels, context.split->pool, job.omitted_class);
        // The distilled student learns from the teacher alone; the hard-label one from the labels.
        out.labels = job.distilled ? std::vector<std::int64_t>(all_labels.size(), no_label) : all_labels;
        break;
    }
    return out;
}

namespace {

objective_kind kind_of(const training_job& job) {
    if (!job.distilled) return objective_kind::hard_labels;
    switch (job.set) {
    case transfer_set::labelled_subset:
    case transfer_set::all_labelled: return objective_kind::distillation;
    case transfer_set::subset_and_unlabelled:
    case transfer_set::without_class: return objective_kind::distillation_with_unlabelled;
    }
    throw std::logic_error("unknown transfer_set");
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::vector<job_outcome> run_jobs(const job_context& context, const student_plan& plan,
                                  const std::vector<training_job>& jobs, const std::string& phase, evaluation what) {
    const std::vector<int> sizes{image_pixels, plan.hidden, class_count};
    const schedule steps{.epochs = plan.epochs, .epoch_samples = context.data->train.x.rows(),
                         .batch_size = plan.batch_size, .learning_rate = plan.learning_rate,
                         .weight_decay = plan.weight_decay};
    std::vector<job_outcome> outcomes(jobs.size());
    const bool report = what == evaluation::report;
    progress_bar bar(phase, static_cast<int>(jobs.size()), total_steps(steps), report ? "test acc" : "");

    // An exception must not leave an OpenMP loop (that terminates the program): keep the first one
    // and rethrow it after the loop.
    std::exception_ptr failure;
    const int count = static_cast<int>(jobs.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(context.threads)
    for (int j = 0; j < count; ++j) {
        try {
            const auto start = std::chrono::steady_clock::now();
            const training_job& job = jobs[static_cast<std::size_t>(j)];
            if (job.distilled && context.teacher_logits == nullptr)
                throw std::logic_error("a distilled student was scheduled before the teacher exists");
            random_source seed_rng(1000 + static_cast<std::uint64_t>(job.seed));
            const auto subset = balanced_subset(context.data->train.labels, context.split->pool, context.labelled,
                                                seed_rng.split());
            random_source init = seed_rng.split();
            const random_source training_rng = seed_rng.split();
            job_rows data = rows_for(context, job, subset);

            auto student = std::make_shared<mlp>(sizes, job.dropout < 0 ? plan.dropout : job.dropout, init);
            const training_rows train_rows{.x = &context.data->train.x, .labels = data.labels,
                                           .teacher_logits = job.distilled ? context.teacher_logits : nullptr,
                                           .rows = std::move(data.rows)};
            job_outcome& out = outcomes[static_cast<std::size_t>(j)];
            out.test_curve = train(*student, objective(kind_of(job), job.loss), steps, train_rows,
                                   report ? &context.data->test : nullptr, training_rng,
                                   [&](const epoch_summary& s) { bar.update(j, s); });
            matrix validation_logits = student->predict(context.validation->x);
            out.validation_accuracy = accuracy(validation_logits, context.validation->labels);
            if (what != evaluation::validation) out.validation_logits = std::move(validation_logits);
            if (report) {
                out.test_logits = student->predict(context.data->test.x);
                out.model = std::move(student);
            }
            out.seconds = seconds_since(start);
        } catch (...) {
#pragma omp critical
            if (!failure) failure = std::current_exception();
        }
    }
    if (failure) std::rethrow_exception(failure);
    bar.finish();
    return outcomes;
}

}  // namespace demo
