// scripts/demo's program: distil a wide MLP teacher into a small MLP student on Fashion-MNIST and
// compare it with the same student trained on hard labels. docs/demo.md explains the recipe.
#include "dataset.hpp"
#include "mlp.hpp"
#include "objective.hpp"
#include "progress.hpp"
#include "random.hpp"
#include "report.hpp"
#include "teacher_cache.hpp"
#include "trainer.hpp"

#include <CLI/CLI.hpp>
#include <distill/distill.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <thread>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace demo {
namespace {

struct options {
    bool quick = false;
    int epochs = 5;               // student epochs of 60,000 samples
    int teacher_epochs = 12;
    std::vector<int> teacher_hidden = {512, 512};
    float teacher_dropout = 0.3f;
    int student_hidden = 32;
    float student_dropout = 0.2f;
    float learning_rate = 2e-3f;
    float weight_decay = 1e-4f;
    int batch_size = 128;
    double temperature = 2.0;
    double alpha = 0.9;
    int seeds = 3;
    int labelled = 1000;
    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::filesystem::path output = "results";
    std::filesystem::path data = "/usr/share/datasets/fashion-mnist";
    std::filesystem::path teacher_cache;  // default: <output>/teacher.bin
    bool retrain_teacher = false;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string join_sizes(const std::vector<int>& sizes) {
    std::string out;
    for (const int s : sizes) out += (out.empty() ? "" : "-") + std::to_string(s);
    return out;
}

// A class-balanced random subset: with 1,000 of 60,000 images, plain random sampling would give
// some classes 20% fewer examples than others from one seed to the next and blur the comparison.
std::vector<std::int64_t> balanced_subset(std::span<const std::int64_t> labels, int size, random_source rng) {
    std::vector<std::vector<std::int64_t>> by_class(class_count);
    for (std::size_t i = 0; i < labels.size(); ++i) by_class[static_cast<std::size_t>(labels[i])].push_back(static_cast<std::int64_t>(i));
    std::vector<std::int64_t> subset;
    for (int c = 0; c < class_count; ++c) {
        auto& rows = by_class[static_cast<std::size_t>(c)];
        shuffle(rows, rng);
        const auto take = static_cast<std::size_t>(size / class_count + (c < size % class_count ? 1 : 0));
        subset.insert(subset.end(), rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(std::min(take, rows.size())));
    }
    std::sort(subset.begin(), subset.end());
    return subset;
}

struct student_spec {
    std::string name;
    std::string description;
    objective_kind kind;
    bool subset_only;     // trains on the labelled subset only (else on all 60,000 images)
    bool withhold_labels; // the images outside the subset keep no label (else every label is known)
};

struct teacher_outputs {
    matrix train_logits, test_logits;
    model_result result;
};

teacher_outputs make_teacher(const options& opt, const fashion_mnist& data) {
    std::vector<int> sizes{image_pixels};
    sizes.insert(sizes.end(), opt.teacher_hidden.begin(), opt.teacher_hidden.end());
    sizes.push_back(class_count);
    const schedule plan{.epochs = opt.teacher_epochs, .epoch_samples = data.train.x.rows(), .batch_size = 128,
                        .learning_rate = 1e-3f, .weight_decay = 0.0f};
    std::ostringstream recipe;
    recipe << "sizes=" << join_sizes(sizes) << " dropout=" << opt.teacher_dropout << " epochs=" << plan.epochs
           << " batch=" << plan.batch_size << " lr=" << plan.learning_rate << " seed=0 data=" << data.train.x.rows();

    const auto start = std::chrono::steady_clock::now();
    random_source init(0);
    mlp teacher(sizes, opt.teacher_dropout, init);
    const auto cache = opt.teacher_cache.empty() ? opt.output / "teacher.bin" : opt.teacher_cache;
    double train_seconds = 0;
    if (!opt.retrain_teacher && load_teacher(cache, recipe.str(), teacher)) {
        std::printf("%-26s loaded from %s (--retrain-teacher to train it again)\n", "teacher", cache.c_str());
    } else {
        random_source fresh_init(0);  // a failed load may have overwritten some weights
        teacher = mlp(sizes, opt.teacher_dropout, fresh_init);
        std::vector<std::int64_t> all_rows(static_cast<std::size_t>(data.train.x.rows()));
        std::iota(all_rows.begin(), all_rows.end(), 0);
        const training_rows rows{.x = &data.train.x, .labels = data.train.labels, .teacher_logits = nullptr,
                                 .rows = std::move(all_rows)};
        progress_bar bar("teacher " + join_sizes(sizes), 1, total_steps(plan));
        train(teacher, objective(objective_kind::hard_labels, 1.0, 0.0), plan, rows, data.test, random_source(1),
              [&](const epoch_summary& s) { bar.update(0, s); });
        bar.finish();
        save_teacher(cache, recipe.str(), teacher);
        train_seconds = seconds_since(start);
    }
    teacher_outputs out{teacher.predict(data.train.x), teacher.predict(data.test.x), {}};
    out.result = {.name = "teacher", .description = join_sizes(sizes) + ", " + std::to_string(data.train.x.rows()) + " labels",
                  .params = teacher.parameter_count(), .accuracy = {accuracy(out.test_logits, data.test.labels)},
                  .soft_kl = {0.0}, .curves = {}, .baseline = "", .seconds = train_seconds};
    return out;
}

// Trains every (student, seed) pair of a group, the pairs spread over the threads. Each training is
// single-threaded: a 784-32-10 student's matrices are too small for a parallel GEMM to pay, while
// independent trainings scale almost perfectly.
void train_students(const options& opt, const fashion_mnist& data, const teacher_outputs& teacher,
                    const std::string& phase, const std::vector<student_spec>& specs, std::vector<model_result>& results) {
    const std::vector<int> sizes{image_pixels, opt.student_hidden, class_count};
    const schedule plan{.epochs = opt.epochs, .epoch_samples = data.train.x.rows(), .batch_size = opt.batch_size,
                        .learning_rate = opt.learning_rate, .weight_decay = opt.weight_decay};
    const int jobs = static_cast<int>(specs.size()) * opt.seeds;
    const distill::kl_divergence<float> soft_kl({.temperature = opt.temperature, .scale_by_t_squared = false});

    const std::size_t first = results.size();
    for (const student_spec& s : specs) {
        model_result r;
        r.name = s.name;
        r.description = s.description;
        r.params = parameter_count(sizes);
        r.accuracy.resize(static_cast<std::size_t>(opt.seeds));
        r.soft_kl.resize(static_cast<std::size_t>(opt.seeds));
        r.curves.resize(static_cast<std::size_t>(opt.seeds));
        r.baseline = s.kind == objective_kind::hard_labels ? "" : (s.subset_only || s.withhold_labels ? "hard_" + std::to_string(opt.labelled) : "hard_60000");
        results.push_back(std::move(r));
    }
    std::vector<double> job_seconds(static_cast<std::size_t>(jobs));

    progress_bar bar(phase, jobs, total_steps(plan));
    // An exception must not leave an OpenMP loop (that terminates the program): keep the first one
    // and rethrow it after the loop.
    std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 1) num_threads(opt.threads)
    for (int job = 0; job < jobs; ++job) {
        try {
            const auto start = std::chrono::steady_clock::now();
            const student_spec& spec = specs[static_cast<std::size_t>(job / opt.seeds)];
            const auto seed = static_cast<std::size_t>(job % opt.seeds);
            // Everything random derives from the seed alone, so the hard-label and distilled students of
            // a seed share their labelled images, initial weights, batch order and dropout draws.
            random_source seed_rng(1000 + seed);
            const auto subset = balanced_subset(data.train.labels, opt.labelled, seed_rng.split());
            random_source init = seed_rng.split();
            const random_source training_rng = seed_rng.split();

            std::vector<std::int64_t> labels = data.train.labels;
            std::vector<std::int64_t> rows = subset;
            if (!spec.subset_only) {
                rows.resize(labels.size());
                std::iota(rows.begin(), rows.end(), 0);
            }
            if (spec.withhold_labels) {
                std::vector<std::int64_t> kept(labels.size(), no_label);
                for (const auto r : subset) kept[static_cast<std::size_t>(r)] = labels[static_cast<std::size_t>(r)];
                labels = std::move(kept);
            }

            mlp student(sizes, opt.student_dropout, init);
            const training_rows train_rows{.x = &data.train.x, .labels = labels,
                                           .teacher_logits = &teacher.train_logits, .rows = std::move(rows)};
            auto curve = train(student, objective(spec.kind, opt.temperature, opt.alpha), plan, train_rows,
                               data.test, training_rng, [&](const epoch_summary& s) { bar.update(job, s); });
            const matrix test_logits = student.predict(data.test.x);

            // Each job writes only its own seed's slots.
            model_result& r = results[first + static_cast<std::size_t>(job / opt.seeds)];
            r.accuracy[seed] = curve.back();
            r.soft_kl[seed] = soft_kl.loss(test_logits, teacher.test_logits).total;
            r.curves[seed] = std::move(curve);
            job_seconds[static_cast<std::size_t>(job)] = seconds_since(start);
        } catch (...) {
#pragma omp critical
            if (!failure) failure = std::current_exception();
        }
    }
    if (failure) std::rethrow_exception(failure);
    bar.finish();
    for (std::size_t s = 0; s < specs.size(); ++s)
        for (int seed = 0; seed < opt.seeds; ++seed)
            results[first + s].seconds +=
                job_seconds[s * static_cast<std::size_t>(opt.seeds) + static_cast<std::size_t>(seed)] / opt.seeds;
}

int run(const options& opt) {
    const auto start = std::chrono::steady_clock::now();
    // Every GEMM single-threaded; the threads train independent students instead. Measured on a
    // 2-core machine that other work was also using: a teacher epoch took 6 s on one thread and 67 s
    // with Eigen's OpenMP GEMM on two, whose threads meet at a barrier in every product and so wait
    // for whichever was descheduled. Whole trainings, one per thread, never wait for each other.
    Eigen::setNbThreads(1);
    std::filesystem::create_directories(opt.output);
    std::printf("distill demo: Fashion-MNIST, T = %g, alpha = %g, %d seed%s, %d labelled images, %d thread%s%s\n",
                opt.temperature, opt.alpha, opt.seeds, opt.seeds == 1 ? "" : "s", opt.labelled, opt.threads,
                opt.threads == 1 ? "" : "s", opt.quick ? ", quick run" : "");

    const fashion_mnist data = load_fashion_mnist(opt.data);
    std::printf("%-26s %lld training and %lld test images from %s (%.1f s)\n", "data",
                static_cast<long long>(data.train.x.rows()), static_cast<long long>(data.test.x.rows()),
                opt.data.c_str(), seconds_since(start));
    if (opt.labelled < class_count || opt.labelled > data.train.x.rows())
        throw std::invalid_argument("--labelled must be between 10 and " + std::to_string(data.train.x.rows()));

    const teacher_outputs teacher = make_teacher(opt, data);
    std::vector<model_result> results{teacher.result};

    const std::string n = std::to_string(opt.labelled);
    const std::string all = std::to_string(data.train.x.rows());
    const std::string unlabelled = std::to_string(data.train.x.rows() - opt.labelled);
    if (opt.labelled < data.train.x.rows()) {
        train_students(opt, data, teacher, "students, " + n + " labels",
                       {{"hard_" + n, n + " labelled", objective_kind::hard_labels, true, false},
                        {"kd_" + n, n + " labelled + teacher", objective_kind::distillation, true, false},
                        {"kd_" + n + "_unlabelled", n + " labelled + " + unlabelled + " unlabelled + teacher",
                         objective_kind::distillation_with_unlabelled, false, true}},
                       results);
    }
    train_students(opt, data, teacher, "students, " + all + " labels",
                   {{"hard_" + all, all + " labelled", objective_kind::hard_labels, false, false},
                    {"kd_" + all, all + " labelled + teacher", objective_kind::distillation, false, false}},
                   results);

    const std::string table = format_table(results, data.test.x.rows());
    std::printf("\n%s\n", table.c_str());
    std::ofstream(opt.output / "table.txt") << table;
    write_results_json(opt.output / "results.json", results, data.test.x.rows());
    const auto png = plot_accuracy(opt.output, results);
    std::printf("wrote %s, %s%s%s (total %s)\n", (opt.output / "results.json").c_str(), (opt.output / "table.txt").c_str(),
                png.empty() ? "" : ", ", png.empty() ? " (no plot: gnuplot not installed)" : png.c_str(),
                format_duration(seconds_since(start)).c_str());
    return 0;
}

}  // namespace
}  // namespace demo

int main(int argc, char** argv) {
    demo::options opt;
    CLI::App app{"Distil a wide MLP teacher into a small MLP student on Fashion-MNIST with distill's fused losses."};
    app.option_defaults()->always_capture_default();  // --help shows each default
    app.add_flag("--quick", opt.quick, "A small run (tiny teacher, few epochs) that finishes in well under a minute");
    app.add_option("--epochs", opt.epochs, "Student epochs, each 60,000 samples seen")->check(CLI::PositiveNumber);
    app.add_option("--teacher-epochs", opt.teacher_epochs, "Teacher epochs")->check(CLI::PositiveNumber);
    app.add_option("-T,--temperature", opt.temperature, "Distillation temperature T")->check(CLI::PositiveNumber);
    app.add_option("-a,--alpha", opt.alpha, "Weight of the soft (KL) term on labelled rows")->check(CLI::Range(0.0, 1.0));
    app.add_option("--seeds", opt.seeds, "Number of seeds per student")->check(CLI::PositiveNumber);
    app.add_option("--labelled", opt.labelled, "Size of the labelled subset")->check(CLI::PositiveNumber);
    app.add_option("--student-hidden", opt.student_hidden, "Hidden units of the student")->check(CLI::PositiveNumber);
    app.add_option("--student-dropout", opt.student_dropout, "Dropout of the student's hidden layer")->check(CLI::Range(0.0, 0.9));
    app.add_option("--learning-rate", opt.learning_rate, "Students' peak learning rate (Adam, cosine decay)")->check(CLI::PositiveNumber);
    app.add_option("--weight-decay", opt.weight_decay, "Students' decoupled weight decay")->check(CLI::NonNegativeNumber);
    app.add_option("--threads", opt.threads, "Threads (students train one per thread)")->check(CLI::PositiveNumber);
    app.add_option("-o,--output", opt.output, "Folder for results.json, table.txt, the plot and the teacher cache");
    app.add_option("--data", opt.data, "Folder holding the Fashion-MNIST .gz files (Debian package dataset-fashion-mnist)");
    app.add_option("--teacher-cache", opt.teacher_cache, "Teacher cache file (default <output>/teacher.bin)");
    app.add_flag("--retrain-teacher", opt.retrain_teacher, "Train the teacher even if the cache matches");
    CLI11_PARSE(app, argc, argv);

    if (opt.quick) {
        // Only the defaults change: an option given on the command line still wins.
        if (app.count("--epochs") == 0) opt.epochs = 2;
        if (app.count("--teacher-epochs") == 0) opt.teacher_epochs = 2;
        opt.teacher_hidden = {256};
    }
    try {
        return demo::run(opt);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fashion_mnist_demo: error: %s\n", e.what());
        return 1;
    }
}
