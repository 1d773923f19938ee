// What a run leaves behind: the tables on stdout (and in table.txt), results.json, tuning.json and
// the plots.
#pragma once

#include "inference_speed.hpp"
#include "matrix.hpp"
#include "objective.hpp"
#include "tuning.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace demo {

// How a model was trained, and where each choice came from.
struct chosen_recipe {
    bool distilled = false;
    loss_recipe loss;       // when distilled
    bool soft_only = false;  // distilled without any label (the omitted-class students)
    double dropout = 0.2;   // the student's (or teacher's) dropout
    int epochs = 0;
    std::string chosen_on;  // e.g. "validation: best of 16 (T x alpha), 1 tuning seed, 3 epochs"
    double validation_accuracy = -1;  // of the choice in its search; -1 when nothing was searched
};

// Hinton's omitted class, measured on the test set for each seed.
struct omitted_class_outcome {
    std::int64_t omitted_class = -1;
    std::int64_t omitted_rows = 0;         // test images of that class
    std::vector<double> bias_shift;        // per seed, chosen on the validation split
    std::vector<double> errors_before, omitted_errors_before;  // per seed, out of the test set
    std::vector<double> errors_after, omitted_errors_after;    // with the shift
};

struct model_result {
    std::string name;                         // teacher, hard_1000, kd_1000, ...
    std::string description;                  // one line for the table
    std::string group;                        // teacher, main, family, omitted_class
    std::string setting;                      // 1000, 1000_unlabelled, all, without_<class>
    std::int64_t params = 0;
    std::vector<int> seeds;
    std::vector<double> accuracy;             // final test accuracy (percent), one per seed
    std::vector<double> soft_kl;              // KL(teacher || student) at T = 2 on the test set, one per seed
    std::vector<std::vector<double>> curves;  // test accuracy after each epoch, one curve per seed
    std::string baseline;                     // the hard-label model its gain is measured against, or ""
    double seconds = 0;                       // wall time of one training, mean over seeds
    std::optional<chosen_recipe> recipe;
    std::int64_t weights_bytes = 0;           // size of the saved weights (seed 0's), float32
    std::optional<inference_speed> speed;     // measured for the teacher and the main students
    std::optional<omitted_class_outcome> omitted;
};

double mean(const std::vector<double>& v);
double sample_sd(const std::vector<double>& v);  // 0 for fewer than two values
const model_result* find(const std::vector<model_result>& results, const std::string& name);
// Per-seed differences to the baseline, so the seed-to-seed noise both models share cancels out.
std::vector<double> gains(const model_result& r, const model_result& baseline);

// "T=2 alpha=0.9" for a distilled recipe, "cross-entropy" otherwise.
std::string recipe_text(const model_result& r);

extern const char* const fashion_class_names[10];

// The teacher and today's students: parameters, accuracy mean ± sd, test errors, gain over the
// hard-label baseline (mean of per-seed differences: seed s of both models saw the same images in the
// same order), the recipe and where it was chosen.
std::string format_main_table(const std::vector<model_result>& results, std::int64_t test_rows);
// The divergence family in the two 1,000-label settings, beside the hard-label student.
std::string format_family_table(const std::vector<model_result>& results);
// What each search tried and chose.
std::string format_tuning_table(const std::vector<search_result>& searches);
// The omitted classes: errors overall and on the class, before and after the bias shift.
std::string format_omitted_table(const std::vector<model_result>& results, const matrix& teacher_test_logits,
                                 std::span<const std::int64_t> test_labels);
// Size and speed against the teacher, beside the accuracy each model keeps.
std::string format_compression_table(const std::vector<model_result>& results);

// An array with one object per model: name, description, group, setting, params, seeds, accuracy
// (per seed), mean, std (also as sd), test_errors, soft_kl_to_teacher, baseline, gain, gain_std,
// seconds, recipe, weights_bytes, inference_us_per_image, omitted_class.
void write_results_json(const std::filesystem::path& file, const std::vector<model_result>& results,
                        std::int64_t test_rows);
// Every search with every grid point's validation accuracy and the choice.
void write_tuning_json(const std::filesystem::path& file, const std::vector<search_result>& searches,
                       const std::string& protocol);

// Each plot writes its .dat and .gp into `folder` and runs gnuplot when it is installed; each returns
// the PNG's path, or an empty path when gnuplot is missing or failed (the data stay).
// Test accuracy per epoch of the main students.
std::filesystem::path plot_accuracy(const std::filesystem::path& folder, const std::vector<model_result>& results);
// Validation accuracy over T x alpha for Hinton's loss, one panel per setting searched.
std::filesystem::path plot_heatmap(const std::filesystem::path& folder, const std::vector<search_result>& searches);
// Each divergence's gain over the hard-label student, per setting, with the sd over seeds as error bars.
std::filesystem::path plot_family(const std::filesystem::path& folder, const std::vector<model_result>& results);

}  // namespace demo
