// What a run leaves behind: the table on stdout (and in table.txt), results.json, and the
// accuracy-per-epoch plot.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace demo {

struct model_result {
    std::string name;                         // teacher, hard_1000, kd_1000, ...
    std::string description;                  // one line for the table
    std::int64_t params = 0;
    std::vector<double> accuracy;             // final test accuracy (percent), one per seed
    std::vector<double> soft_kl;              // KL(teacher || student) at T on the test set, one per seed
    std::vector<std::vector<double>> curves;  // test accuracy after each epoch, one curve per seed
    std::string baseline;                     // the hard-label model its gain is measured against, or ""
    double seconds = 0;                       // wall time of one training, mean over seeds
};

double mean(const std::vector<double>& v);
double sample_sd(const std::vector<double>& v);  // 0 for fewer than two values

// model, parameters, accuracy mean ± sd, test errors, gain over the baseline (mean of per-seed
// differences: seed s of both models saw the same images in the same order).
std::string format_table(const std::vector<model_result>& results, std::int64_t test_rows);

// An array of {name, description, params, accuracy: [per seed], mean, sd, test_errors,
// soft_kl_to_teacher: [per seed], baseline, gain, seconds}.
void write_results_json(const std::filesystem::path& file, const std::vector<model_result>& results,
                        std::int64_t test_rows);

// Writes accuracy.dat and accuracy.gp into `folder` and runs gnuplot on them when it is installed.
// Returns the PNG's path, or an empty path when gnuplot is missing or failed (the data stay).
std::filesystem::path plot_accuracy(const std::filesystem::path& folder, const std::vector<model_result>& results);

}  // namespace demo
