#include "report.hpp"

#include "omitted_class.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

namespace demo {

const char* const fashion_class_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                             "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

namespace {

std::string json_number(double v, const char* format = "%.4f") {
    if (!std::isfinite(v)) return "null";  // JSON has no inf or NaN
    char text[64];
    std::snprintf(text, sizeof text, format, v);
    return text;
}

std::string json_array(const std::vector<double>& v, const char* format = "%.4f") {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + json_number(v[i], format);
    return out + "]";
}

std::string quoted(const std::string& s) {
    // Our names and descriptions are plain ASCII; escape the two characters that could break JSON anyway.
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

std::string format(const char* pattern, auto... values) {
    char text[512];
    std::snprintf(text, sizeof text, pattern, values...);
    return text;
}

std::string mean_sd(const std::vector<double>& v, const char* pattern = "%.2f ± %.2f") {
    return format(pattern, mean(v), sample_sd(v));
}

// printf's field widths count bytes; "±" and "×" are two bytes in UTF-8, so each one in a value
// widens the field by one to keep the columns straight.
std::string pad(const std::string& s, int width, bool left = false) {
    int extra = 0;
    for (std::size_t i = 0; i < s.size(); ++i)
        if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++extra;  // continuation bytes
    const int shown = static_cast<int>(s.size()) - extra;
    const std::string fill(static_cast<std::size_t>(std::max(0, width - shown)), ' ');
    return left ? s + fill : fill + s;
}

std::string recipe_json(const chosen_recipe& r) {
    std::string out = "{\"loss\": ";
    if (!r.distilled) {
        out += "\"cross_entropy\"";
    } else {
        out += r.soft_only ? "\"soft_targets_only\"" : "\"distillation\"";
        out += ", \"divergence\": " + quoted(divergence_name(r.loss.divergence)) +
               ", \"temperature\": " + json_number(r.loss.temperature, "%g");
        if (!r.soft_only) out += ", \"alpha\": " + json_number(r.loss.alpha, "%g");
        for (const auto& [name, value] : divergence_parameters(r.loss.divergence))
            out += ", " + quoted(name) + ": " + json_number(value, "%g");
    }
    out += ", \"dropout\": " + json_number(r.dropout, "%g") + ", \"epochs\": " + std::to_string(r.epochs) +
           ", \"chosen_on\": " + quoted(r.chosen_on) + ", \"validation_accuracy\": " +
           (r.validation_accuracy >= 0 ? json_number(r.validation_accuracy) : "null") + "}";
    return out;
}

std::string setting_title(const std::string& setting) {
    if (setting == "1000") return "the labelled subset alone";
    if (setting == "1000_unlabelled") return "the labelled subset + the rest of the pool unlabelled";
    if (setting == "all") return "every label of the pool";
    return setting;
}

}  // namespace

double mean(const std::vector<double>& v) {
    double sum = 0;
    for (const double x : v) sum += x;
    return v.empty() ? 0.0 : sum / static_cast<double>(v.size());
}

double sample_sd(const std::vector<double>& v) {
    if (v.size() < 2) return 0.0;
    const double m = mean(v);
    double sq = 0;
    for (const double x : v) sq += (x - m) * (x - m);
    return std::sqrt(sq / static_cast<double>(v.size() - 1));
}

const model_result* find(const std::vector<model_result>& results, const std::string& name) {
    for (const model_result& r : results)
        if (r.name == name) return &r;
    return nullptr;
}

std::vector<double> gains(const model_result& r, const model_result& baseline) {
    std::vector<double> out;
    for (std::size_t s = 0; s < r.accuracy.size() && s < baseline.accuracy.size(); ++s)
        out.push_back(r.accuracy[s] - baseline.accuracy[s]);
    return out;
}

std::string recipe_text(const model_result& r) {
    if (!r.recipe) return "";
    if (!r.recipe->distilled) return format("cross-entropy, dropout %g", r.recipe->dropout);
    std::string out = format("T=%g", r.recipe->loss.temperature);
    if (!r.recipe->soft_only) out += format(" alpha=%g", r.recipe->loss.alpha);
    for (const auto& [name, value] : divergence_parameters(r.recipe->loss.divergence)) {
        // DKD's two weights abbreviated, so that a recipe fits its table column.
        const char* shown = name == "target_weight" ? "tw" : name == "non_target_weight" ? "ntw" : name.c_str();
        out += format(" %s=%g", shown, value);
    }
    return out;
}

std::string format_main_table(const std::vector<model_result>& results, std::int64_t test_rows) {
    std::ostringstream out;
    out << pad("model", 20, true) << ' ' << pad("trained on", 45, true) << ' ' << pad("params", 7) << ' '
        << pad("test acc (%)", 14) << ' ' << pad("errors", 6) << ' ' << pad("gain vs hard", 14) << "  "
        << pad("recipe (chosen on validation)", 29, true) << ' ' << pad("time/seed", 9) << '\n'
        << std::string(153, '-') << '\n';
    for (const model_result& r : results) {
        if (r.group != "teacher" && r.group != "main") continue;
        std::string gain;
        if (const model_result* b = r.baseline.empty() ? nullptr : find(results, r.baseline))
            gain = mean_sd(gains(r, *b), "%+.2f ± %.2f");
        const double errors = (100.0 - mean(r.accuracy)) / 100.0 * static_cast<double>(test_rows);
        out << pad(r.name, 20, true) << ' ' << pad(r.description, 45, true) << ' ' << pad(std::to_string(r.params), 7)
            << ' ' << pad(mean_sd(r.accuracy), 14) << ' ' << pad(format("%.0f", errors), 6) << ' ' << pad(gain, 14)
            << "  " << pad(r.group == "teacher" ? "fixed (not searched)" : recipe_text(r), 29, true) << ' '
            << pad(r.seconds > 0 ? format("%.0f s", r.seconds) : "", 9) << '\n';
    }
    return out.str();
}

std::string format_family_table(const std::vector<model_result>& results) {
    std::ostringstream out;
    for (const std::string setting : {"1000", "1000_unlabelled"}) {
        const model_result* baseline = nullptr;
        std::vector<const model_result*> rows;
        for (const model_result& r : results)
            if ((r.group == "main" || r.group == "family") && r.setting == setting && r.recipe && r.recipe->distilled) {
                rows.push_back(&r);
                if (!baseline) baseline = find(results, r.baseline);
            }
        if (rows.empty() || !baseline) continue;
        out << "Soft term on " << setting_title(setting) << " (" << rows.front()->description << "); baseline "
            << baseline->name << " " << mean_sd(baseline->accuracy) << " %\n"
            << pad("divergence", 16, true) << ' ' << pad("model", 26, true) << ' ' << pad("test acc (%)", 14) << ' '
            << pad("gain vs hard", 14) << "  " << pad("recipe (chosen on validation)", 34, true) << ' '
            << pad("val acc", 7) << '\n'
            << std::string(118, '-') << '\n';
        for (const model_result* r : rows)
            out << pad(divergence_label(r->recipe->loss.divergence), 16, true) << ' ' << pad(r->name, 26, true) << ' '
                << pad(mean_sd(r->accuracy), 14) << ' ' << pad(mean_sd(gains(*r, *baseline), "%+.2f ± %.2f"), 14)
                << "  " << pad(recipe_text(*r), 34, true) << ' '
                << pad(format("%.2f", r->recipe->validation_accuracy), 7) << '\n';
        out << '\n';
    }
    return out.str();
}

std::string format_tuning_table(const std::vector<search_result>& searches) {
    std::ostringstream out;
    out << pad("setting", 16, true) << ' ' << pad("divergence", 16, true) << ' ' << pad("tried", 5) << "  "
        << pad("chosen", 34, true) << ' ' << pad("val acc", 7) << ' ' << pad("worst..best of the grid", 23) << '\n'
        << std::string(106, '-') << '\n';
    for (const search_result& s : searches) {
        double worst = s.validation_accuracy.front();
        for (const double v : s.validation_accuracy) worst = std::min(worst, v);
        model_result shown;
        chosen_recipe recipe;
        recipe.distilled = true;
        recipe.loss = s.best();
        recipe.soft_only = s.setting.starts_with("without");
        shown.recipe = recipe;
        out << pad(s.setting, 16, true) << ' ' << pad(divergence_label(s.kind), 16, true) << ' '
            << pad(std::to_string(s.grid.size()), 5) << "  " << pad(recipe_text(shown), 34, true) << ' '
            << pad(format("%.2f", s.best_accuracy()), 7) << ' '
            << pad(format("%.2f..%.2f", worst, s.best_accuracy()), 23) << '\n';
    }
    return out.str();
}

std::string format_omitted_table(const std::vector<model_result>& results, const matrix& teacher_test_logits,
                                 std::span<const std::int64_t> test_labels) {
    std::ostringstream out;
    for (const model_result& soft : results) {
        if (soft.group != "omitted_class" || !soft.recipe || !soft.recipe->distilled || !soft.omitted) continue;
        const auto& o = *soft.omitted;
        const model_result* hard = find(results, soft.baseline);
        const std::string cls = fashion_class_names[o.omitted_class];
        const error_counts teacher = count_errors(teacher_test_logits, test_labels, o.omitted_class, 0.0);
        out << "Class " << o.omitted_class << " (" << cls << ") left out of the student's transfer set: test errors of "
            << test_labels.size() << " overall and of the " << o.omitted_rows << " " << cls
            << " images, mean ± sd over " << soft.seeds.size() << (soft.seeds.size() == 1 ? " seed\n" : " seeds\n")
            << pad("student", 44, true) << ' ' << pad("errors", 14) << ' ' << pad("on " + cls, 14) << ' '
            << pad("bias shift", 14) << '\n'
            << std::string(89, '-') << '\n';
        out << pad("teacher (trained on every class)", 44, true) << ' ' << pad(std::to_string(teacher.overall), 14)
            << ' ' << pad(std::to_string(teacher.omitted), 14) << '\n';
        const auto line = [&](const std::string& what, const std::vector<double>& all, const std::vector<double>& on,
                              const std::vector<double>* shift) {
            out << pad(what, 44, true) << ' ' << pad(mean_sd(all, "%.0f ± %.0f"), 14) << ' '
                << pad(mean_sd(on, "%.0f ± %.0f"), 14) << ' ' << pad(shift ? mean_sd(*shift) : "", 14) << '\n';
        };
        if (hard && hard->omitted) {
            line("hard labels (" + hard->name + ")", hard->omitted->errors_before, hard->omitted->omitted_errors_before,
                 nullptr);
            line("  + its bias shift (a control)", hard->omitted->errors_after, hard->omitted->omitted_errors_after,
                 &hard->omitted->bias_shift);
        }
        line("soft targets only (" + soft.name + ", " + recipe_text(soft) + ")", o.errors_before,
             o.omitted_errors_before, nullptr);
        line("  + bias shift chosen on validation", o.errors_after, o.omitted_errors_after, &o.bias_shift);
        out << '\n';
    }
    return out.str();
}

std::string format_compression_table(const std::vector<model_result>& results) {
    const model_result* teacher = find(results, "teacher");
    if (!teacher || !teacher->speed) return "";
    std::ostringstream out;
    out << pad("model", 20, true) << ' ' << pad("params", 7) << ' ' << pad("weights (B)", 11) << ' '
        << pad("smaller", 7) << ' ' << pad("µs/image b=1", 12) << ' ' << pad("faster", 6) << ' '
        << pad("µs/image b=256", 14) << ' ' << pad("faster", 6) << ' ' << pad("test acc (%)", 12) << ' '
        << pad("of teacher's", 12) << '\n'
        << std::string(118, '-') << '\n';
    const auto& ts = *teacher->speed;
    for (const model_result& r : results) {
        if (!r.speed) continue;
        const auto& s = *r.speed;
        out << pad(r.name, 20, true) << ' ' << pad(std::to_string(r.params), 7) << ' '
            << pad(std::to_string(r.weights_bytes), 11) << ' '
            << pad(format("%.1f×", static_cast<double>(teacher->weights_bytes) / static_cast<double>(r.weights_bytes)),
                   7)
            << ' ' << pad(format("%.2f", s.batch1_cpu_us), 12) << ' '
            << pad(format("%.1f×", ts.batch1_cpu_us / s.batch1_cpu_us), 6) << ' '
            << pad(format("%.2f", s.batch256_cpu_us), 14) << ' '
            << pad(format("%.1f×", ts.batch256_cpu_us / s.batch256_cpu_us), 6) << ' '
            << pad(format("%.2f", mean(r.accuracy)), 12) << ' '
            << pad(format("%.1f%%", 100.0 * mean(r.accuracy) / mean(teacher->accuracy)), 12) << '\n';
    }
    return out.str();
}

void write_results_json(const std::filesystem::path& file, const std::vector<model_result>& results,
                        std::int64_t test_rows) {
    std::ofstream out(file);
    if (!out) throw std::runtime_error("cannot write " + file.string());
    out << "[\n";
    for (std::size_t i = 0; i < results.size(); ++i) {
        const model_result& r = results[i];
        const model_result* b = r.baseline.empty() ? nullptr : find(results, r.baseline);
        std::string seeds = "[";
        for (std::size_t s = 0; s < r.seeds.size(); ++s) seeds += (s ? ", " : "") + std::to_string(r.seeds[s]);
        seeds += "]";
        const double sd = sample_sd(r.accuracy);
        out << "  {\"name\": " << quoted(r.name) << ", \"description\": " << quoted(r.description)
            << ", \"group\": " << quoted(r.group) << ", \"setting\": " << quoted(r.setting)
            << ", \"params\": " << r.params << ",\n   \"seeds\": " << seeds
            << ", \"accuracy\": " << json_array(r.accuracy) << ", \"mean\": " << json_number(mean(r.accuracy))
            << ", \"std\": " << json_number(sd) << ", \"sd\": " << json_number(sd)
            << ",\n   \"test_errors\": " << json_number((100.0 - mean(r.accuracy)) / 100.0 * test_rows, "%.1f")
            << ", \"soft_kl_to_teacher\": " << json_array(r.soft_kl, "%.6g")
            << ", \"baseline\": " << (b ? quoted(b->name) : "null")
            << ", \"gain\": " << (b ? json_number(mean(gains(r, *b))) : "null")
            << ", \"gain_std\": " << (b ? json_number(sample_sd(gains(r, *b))) : "null")
            << ", \"seconds\": " << json_number(r.seconds, "%.1f")
            << ",\n   \"recipe\": " << (r.recipe ? recipe_json(*r.recipe) : "null")
            << ",\n   \"weights_bytes\": " << r.weights_bytes << ", \"inference_us_per_image\": ";
        if (r.speed)
            out << "{\"batch_1\": " << json_number(r.speed->batch1_cpu_us, "%.3f")
                << ", \"batch_256\": " << json_number(r.speed->batch256_cpu_us, "%.3f")
                << ", \"batch_1_wall\": " << json_number(r.speed->batch1_wall_us, "%.3f")
                << ", \"batch_256_wall\": " << json_number(r.speed->batch256_wall_us, "%.3f")
                << ", \"clock\": \"thread CPU time, median; *_wall: wall clock, median\"}";
        else
            out << "null";
        out << ", \"omitted_class\": ";
        if (r.omitted) {
            const auto& o = *r.omitted;
            out << "{\"class\": " << o.omitted_class
                << ", \"class_name\": " << quoted(fashion_class_names[o.omitted_class])
                << ", \"class_test_images\": " << o.omitted_rows << ", \"bias_shift\": " << json_array(o.bias_shift)
                << ", \"test_errors_before\": " << json_array(o.errors_before, "%.0f")
                << ", \"class_errors_before\": " << json_array(o.omitted_errors_before, "%.0f")
                << ", \"test_errors_after\": " << json_array(o.errors_after, "%.0f")
                << ", \"class_errors_after\": " << json_array(o.omitted_errors_after, "%.0f") << "}";
        } else {
            out << "null";
        }
        out << "}" << (i + 1 < results.size() ? "," : "") << '\n';
    }
    out << "]\n";
    if (!out) throw std::runtime_error("failed writing " + file.string());
}

void write_tuning_json(const std::filesystem::path& file, const std::vector<search_result>& searches,
                       const std::string& protocol) {
    std::ofstream out(file);
    if (!out) throw std::runtime_error("cannot write " + file.string());
    out << "{\"protocol\": " << quoted(protocol) << ",\n \"searches\": [\n";
    for (std::size_t i = 0; i < searches.size(); ++i) {
        const search_result& s = searches[i];
        out << "  {\"setting\": " << quoted(s.setting) << ", \"divergence\": " << quoted(divergence_name(s.kind))
            << ", \"chosen\": " << s.chosen << ", \"grid\": [\n";
        for (std::size_t g = 0; g < s.grid.size(); ++g) {
            const loss_recipe& r = s.grid[g];
            out << "    {\"temperature\": " << json_number(r.temperature, "%g") << ", \"alpha\": "
                << json_number(r.alpha, "%g");
            for (const auto& [name, value] : divergence_parameters(r.divergence))
                out << ", " << quoted(name) << ": " << json_number(value, "%g");
            out << ", \"validation_accuracy\": " << json_number(s.validation_accuracy[g]) << "}"
                << (g + 1 < s.grid.size() ? "," : "") << '\n';
        }
        out << "  ]}" << (i + 1 < searches.size() ? "," : "") << '\n';
    }
    out << "]}\n";
    if (!out) throw std::runtime_error("failed writing " + file.string());
}

namespace {

std::filesystem::path run_gnuplot(const std::filesystem::path& script, const std::filesystem::path& png) {
    if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return {};
    const std::string command = "gnuplot '" + script.string() + "'";
    if (std::system(command.c_str()) != 0) return {};
    return png;
}

}  // namespace

std::filesystem::path plot_accuracy(const std::filesystem::path& folder, const std::vector<model_result>& results) {
    const auto data = folder / "accuracy.dat";
    const auto script = folder / "accuracy.gp";
    const auto png = folder / "accuracy.png";

    // One gnuplot data block per student ("index" in the script), mean over seeds per epoch.
    std::vector<const model_result*> students;
    const model_result* teacher = find(results, "teacher");
    {
        std::ofstream out(data);
        for (const model_result& r : results) {
            if (r.group != "main" || r.curves.empty() || r.curves.front().empty()) continue;
            students.push_back(&r);
            out << "# " << r.name << "\n";
            for (std::size_t e = 0; e < r.curves.front().size(); ++e) {
                std::vector<double> at_epoch;
                for (const auto& curve : r.curves) at_epoch.push_back(curve[e]);
                out << e + 1 << ' ' << mean(at_epoch) << '\n';
            }
            out << "\n\n";
        }
    }
    if (students.empty()) return {};
    {
        std::ofstream out(script);
        out << "set terminal pngcairo size 900,560 font 'sans,10'\n"
            << "set output '" << png.string() << "'\n"
            << "set title 'Fashion-MNIST test accuracy, mean over seeds (recipes chosen on the validation split)'\n"
            << "set xlabel 'epoch (60,000 training samples seen)'\nset ylabel 'test accuracy (%)'\n"
            // noenhanced: model names contain '_', which gnuplot would otherwise typeset as a subscript.
            << "set termoption noenhanced\nset key outside right top\nset xtics 1\nset offsets 0, 0, 0.5, 0.5\n"
            << "set grid\n";
        if (teacher != nullptr) out << "teacher = " << mean(teacher->accuracy) << "\n";
        out << "plot ";
        for (std::size_t i = 0; i < students.size(); ++i)
            out << (i ? ", \\\n     " : "") << "'" << data.string() << "' index " << i
                << " using 1:2 with linespoints title '" << students[i]->name << "'";
        if (teacher != nullptr) out << ", \\\n     teacher with lines dashtype 2 lw 2 title 'teacher'";
        out << '\n';
    }
    return run_gnuplot(script, png);
}

std::filesystem::path plot_heatmap(const std::filesystem::path& folder, const std::vector<search_result>& searches) {
    const auto data = folder / "heatmap.dat";
    const auto script = folder / "heatmap.gp";
    const auto png = folder / "heatmap.png";
    std::vector<const search_result*> panels;
    for (const search_result& s : searches)
        if (std::holds_alternative<distill::forward_kl>(s.kind) && !s.setting.starts_with("without"))
            panels.push_back(&s);
    if (panels.empty()) return {};

    // Cells on an index grid (T and alpha are not evenly spaced), labelled with their values.
    std::vector<double> temperatures, alphas;
    for (const loss_recipe& r : panels.front()->grid) {
        if (std::find(temperatures.begin(), temperatures.end(), r.temperature) == temperatures.end())
            temperatures.push_back(r.temperature);
        if (std::find(alphas.begin(), alphas.end(), r.alpha) == alphas.end()) alphas.push_back(r.alpha);
    }
    if (temperatures.size() < 2 || alphas.size() < 2) return {};  // a fixed T or alpha: no map to draw
    const auto index_of = [](const std::vector<double>& v, double x) {
        return static_cast<int>(std::find(v.begin(), v.end(), x) - v.begin());
    };
    {
        std::ofstream out(data);
        for (const search_result* s : panels) {
            out << "# " << s->setting << ": T index, alpha index, validation accuracy, chosen\n";
            for (std::size_t g = 0; g < s->grid.size(); ++g)
                out << index_of(temperatures, s->grid[g].temperature) << ' ' << index_of(alphas, s->grid[g].alpha)
                    << ' ' << s->validation_accuracy[g] << ' ' << (g == s->chosen ? 1 : 0) << '\n';
            out << "\n\n";
        }
    }
    {
        std::ofstream out(script);
        const int width = 360 * static_cast<int>(panels.size()) + 80;
        out << "set terminal pngcairo size " << width << ",420 font 'sans,10'\n"
            << "set output '" << png.string() << "'\nset termoption noenhanced\n"
            << "set multiplot layout 1," << panels.size()
            << " title 'Hinton loss (forward KL): validation accuracy (%) over T x alpha, the choice boxed'\n"
            << "set xlabel 'T'\nset ylabel 'alpha'\nset palette defined (0 '#f7fbff', 1 '#6baed6', 2 '#08306b')\n"
            << "unset key\nset size ratio 1\n";
        out << "set xtics (";
        for (std::size_t i = 0; i < temperatures.size(); ++i)
            out << (i ? ", " : "") << "'" << temperatures[i] << "' " << i;
        out << ")\nset ytics (";
        for (std::size_t i = 0; i < alphas.size(); ++i) out << (i ? ", " : "") << "'" << alphas[i] << "' " << i;
        out << ")\nset xrange [-0.5:" << temperatures.size() - 0.5 << "]\nset yrange [-0.5:" << alphas.size() - 0.5
            << "]\n";
        for (std::size_t p = 0; p < panels.size(); ++p) {
            const search_result& s = *panels[p];
            double low = s.validation_accuracy.front(), high = low;
            for (const double v : s.validation_accuracy) low = std::min(low, v), high = std::max(high, v);
            // Each panel its own colour range: the settings differ by several points, the cells of one by less.
            out << "set title 'students on " << setting_title(s.setting) << "' font ',9'\n"
                << "set cbrange [" << low << ":" << std::max(high, low + 0.01) << "]\n"
                << "plot '" << data.string() << "' index " << p << " using 1:2:3 with image, \\\n"
                << "     '' index " << p << " using 1:2:(sprintf('%.2f', $3)) with labels, \\\n"
                << "     '' index " << p << " using 1:2:($4 > 0 ? 0.45 : 1/0):($4 > 0 ? 0.45 : 1/0) "
                << "with boxxyerror fillstyle empty lw 2 lc 'black'\n";
        }
        out << "unset multiplot\n";
    }
    return run_gnuplot(script, png);
}

std::filesystem::path plot_family(const std::filesystem::path& folder, const std::vector<model_result>& results) {
    const auto data = folder / "family.dat";
    const auto script = folder / "family.gp";
    const auto png = folder / "family.png";
    // Per divergence and setting: the per-seed gains. Bars (mean), error bars (sd) and the seeds
    // themselves as dots: with three seeds, one outlier seed is what an sd cannot show.
    const std::vector<std::string> settings{"1000", "1000_unlabelled"};
    std::vector<std::string> labels;
    std::map<std::string, std::map<std::string, std::vector<double>>> gain;
    for (const model_result& r : results) {
        if ((r.group != "main" && r.group != "family") || !r.recipe || !r.recipe->distilled) continue;
        if (std::find(settings.begin(), settings.end(), r.setting) == settings.end()) continue;
        const model_result* b = find(results, r.baseline);
        if (!b) continue;
        const std::string label = divergence_label(r.recipe->loss.divergence);
        if (std::find(labels.begin(), labels.end(), label) == labels.end()) labels.push_back(label);
        gain[label][r.setting] = gains(r, *b);
    }
    if (labels.empty()) return {};
    double lowest = 0, highest = 0;  // bars start at 0, so the range includes it
    {
        // Block 0: x, mean, sd, setting index (one row per bar); block 1: x, gain (one row per seed).
        // Divergence i's bars sit at 3i and 3i + 1, leaving a gap of one bar between divergences.
        std::ofstream out(data);
        std::ostringstream seeds;
        out << "# x, mean gain, sd, setting (0: 1000 labels, 1: + unlabelled), divergence\n";
        for (std::size_t i = 0; i < labels.size(); ++i)
            for (std::size_t k = 0; k < settings.size(); ++k) {
                const auto it = gain[labels[i]].find(settings[k]);
                if (it == gain[labels[i]].end()) continue;
                const double x = 3.0 * static_cast<double>(i) + static_cast<double>(k);
                const double m = mean(it->second), sd = sample_sd(it->second);
                out << x << ' ' << m << ' ' << sd << ' ' << k << " \"" << labels[i] << "\"\n";
                lowest = std::min(lowest, m - sd);
                highest = std::max(highest, m + sd);
                for (const double g : it->second) {
                    seeds << x + 0.22 << ' ' << g << '\n';  // beside the sd line, not on it
                    lowest = std::min(lowest, g);
                    highest = std::max(highest, g);
                }
            }
        out << "\n\n# x, gain of one seed\n" << seeds.str();
    }
    {
        std::ofstream out(script);
        const double margin = 0.08 * (highest - lowest) + 0.1;
        out << "set terminal pngcairo size 900,480 font 'sans,10'\n"
            << "set output '" << png.string() << "'\nset termoption noenhanced\n"
            << "set title 'Gain of each soft term over the hard-label student "
            << "(test accuracy points; bar: mean, line: sd, dots: the seeds)'\n"
            << "set ylabel 'gain over hard_1000 (points)'\nset grid ytics\nset key below horizontal maxrows 1\n"
            << "set yrange [" << lowest - margin << ":" << highest + margin << "]\n"
            << "set xrange [-1:" << 3 * labels.size() - 1 << "]\nset xzeroaxis lt -1\nset xtics nomirror (";
        for (std::size_t i = 0; i < labels.size(); ++i)
            out << (i ? ", " : "") << "'" << labels[i] << "' " << 3 * i + 0.5;
        out << ")\nset style fill solid 0.8 border -1\nset boxwidth 0.9\n"
            << "plot '" << data.string() << "' index 0 using 1:($4 == 0 ? $2 : 1/0) with boxes lc rgb '#6baed6' "
            << "title '1,000 labels', \\\n"
            << "     '' index 0 using 1:($4 == 1 ? $2 : 1/0) with boxes lc rgb '#08519c' "
            << "title '1,000 labels + the other images unlabelled', \\\n"
            << "     '' index 0 using 1:($2 - $3):(0):(2 * $3) with vectors nohead lw 1.5 lc 'black' notitle, \\\n"
            << "     '' index 1 using 1:2 with points pt 7 ps 0.6 lc rgb '#e6550d' title 'one seed'\n";
    }
    return run_gnuplot(script, png);
}

}  // namespace demo
