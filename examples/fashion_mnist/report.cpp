#include "report.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace demo {
namespace {

const model_result* find(const std::vector<model_result>& results, const std::string& name) {
    for (const model_result& r : results)
        if (r.name == name) return &r;
    return nullptr;
}

// Per-seed differences, so the seed-to-seed noise both models share cancels out.
std::vector<double> gains(const model_result& r, const model_result& baseline) {
    std::vector<double> out;
    for (std::size_t s = 0; s < r.accuracy.size() && s < baseline.accuracy.size(); ++s)
        out.push_back(r.accuracy[s] - baseline.accuracy[s]);
    return out;
}

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

std::string format_table(const std::vector<model_result>& results, std::int64_t test_rows) {
    std::ostringstream out;
    char line[256];
    std::snprintf(line, sizeof line, "%-20s %-40s %9s %16s %11s %14s %10s\n", "model", "trained on", "params",
                  "test acc (%)", "test errors", "gain vs hard", "time/seed");
    out << line << std::string(126, '-') << '\n';
    for (const model_result& r : results) {
        char accuracy[32], gain[32] = "";
        std::snprintf(accuracy, sizeof accuracy, "%.2f ± %.2f", mean(r.accuracy), sample_sd(r.accuracy));
        if (const model_result* b = r.baseline.empty() ? nullptr : find(results, r.baseline)) {
            const auto g = gains(r, *b);
            std::snprintf(gain, sizeof gain, "%+.2f ± %.2f", mean(g), sample_sd(g));
        }
        const double errors = (100.0 - mean(r.accuracy)) / 100.0 * static_cast<double>(test_rows);
        // "±" is two bytes in UTF-8, hence the wider field.
        std::snprintf(line, sizeof line, "%-20s %-40s %9lld %17s %11.0f %15s %10s\n", r.name.c_str(),
                      r.description.c_str(), static_cast<long long>(r.params), accuracy, errors, gain,
                      r.seconds > 0 ? (std::to_string(static_cast<int>(std::lround(r.seconds))) + " s").c_str() : "");
        out << line;
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
        out << "  {\"name\": " << quoted(r.name) << ", \"description\": " << quoted(r.description)
            << ", \"params\": " << r.params << ",\n   \"accuracy\": " << json_array(r.accuracy)
            << ", \"mean\": " << json_number(mean(r.accuracy)) << ", \"sd\": " << json_number(sample_sd(r.accuracy))
            << ",\n   \"test_errors\": " << json_number((100.0 - mean(r.accuracy)) / 100.0 * test_rows, "%.1f")
            << ", \"soft_kl_to_teacher\": " << json_array(r.soft_kl, "%.6g")
            << ", \"baseline\": " << (b ? quoted(b->name) : "null")
            << ", \"gain\": " << (b ? json_number(mean(gains(r, *b))) : "null")
            << ", \"seconds\": " << json_number(r.seconds, "%.1f") << "}" << (i + 1 < results.size() ? "," : "")
            << '\n';
    }
    out << "]\n";
    if (!out) throw std::runtime_error("failed writing " + file.string());
}

std::filesystem::path plot_accuracy(const std::filesystem::path& folder, const std::vector<model_result>& results) {
    const auto data = folder / "accuracy.dat";
    const auto script = folder / "accuracy.gp";
    const auto png = folder / "accuracy.png";

    // One gnuplot data block per student ("index" in the script), mean over seeds per epoch.
    std::vector<const model_result*> students;
    const model_result* teacher = nullptr;
    {
        std::ofstream out(data);
        for (const model_result& r : results) {
            if (r.name == "teacher") {
                teacher = &r;
                continue;
            }
            if (r.curves.empty()) continue;
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
    {
        std::ofstream out(script);
        out << "set terminal pngcairo size 900,560 font 'sans,10'\n"
            << "set output '" << png.string() << "'\n"
            << "set title 'Fashion-MNIST test accuracy, mean over seeds'\n"
            << "set xlabel 'epoch (60,000 training samples seen)'\nset ylabel 'test accuracy (%)'\n"
            // noenhanced: model names contain '_', which gnuplot would otherwise typeset as a subscript.
            << "set termoption noenhanced\nset key outside right top\nset xtics 1\nset offsets 0, 0, 0.5, 0.5\nset grid\n";
        if (teacher != nullptr)
            out << "teacher = " << mean(teacher->accuracy) << "\n";
        out << "plot ";
        for (std::size_t i = 0; i < students.size(); ++i)
            out << (i ? ", \\\n     " : "") << "'" << data.string() << "' index " << i
                << " using 1:2 with linespoints title '" << students[i]->name << "'";
        if (teacher != nullptr) out << ", \\\n     teacher with lines dashtype 2 lw 2 title 'teacher'";
        out << '\n';
    }
    if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) return {};
    const std::string command = "gnuplot '" + script.string() + "'";
    if (std::system(command.c_str()) != 0) return {};
    return png;
}

}  // namespace demo
