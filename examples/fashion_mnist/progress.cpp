#include "progress.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <numeric>

namespace demo {

std::string format_duration(double seconds) {
    const auto total = static_cast<long>(std::lround(std::max(0.0, seconds)));
    char text[32];
    std::snprintf(text, sizeof text, "%ld:%02ld", total / 60, total % 60);
    return text;
}

bool progress_bar::stdout_is_terminal() { return isatty(STDOUT_FILENO) == 1; }

progress_bar::progress_bar(std::string phase, int runs, std::int64_t steps_per_run, std::string accuracy_label)
    : phase_(std::move(phase)), accuracy_label_(std::move(accuracy_label)),
      steps_done_(static_cast<std::size_t>(runs), 0), steps_total_(runs * steps_per_run),
      terminal_(stdout_is_terminal()) {}

progress_bar::~progress_bar() { finish(); }

void progress_bar::update(int run, const epoch_summary& s) {
    const std::lock_guard lock(mutex_);
    steps_done_[static_cast<std::size_t>(run)] = s.step;
    if (s.epoch_finished && s.epoch == s.epochs) ++runs_finished_;
    last_ = s;
    draw(s, false);
}

void progress_bar::finish(const std::string& note) {
    const std::lock_guard lock(mutex_);
    if (finished_) return;
    finished_ = true;
    std::fill(steps_done_.begin(), steps_done_.end(), steps_total_ / static_cast<std::int64_t>(steps_done_.size()));
    draw(last_, true);
    if (!note.empty()) std::printf("  %s\n", note.c_str());
    std::fflush(stdout);
}

void progress_bar::draw(const epoch_summary& s, bool final) {
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double done = static_cast<double>(std::accumulate(steps_done_.begin(), steps_done_.end(), std::int64_t{0}));
    const double fraction = steps_total_ > 0 ? std::min(1.0, done / static_cast<double>(steps_total_)) : 1.0;

    // Before the first epoch ends there is no accuracy yet, and runs that are not monitored have none.
    char accuracy[48] = "";
    if (s.accuracy >= 0) std::snprintf(accuracy, sizeof accuracy, "  %s %.2f%%", accuracy_label_.c_str(), s.accuracy);
    char stats[160];
    const int runs = static_cast<int>(steps_done_.size());
    const std::string runs_text = runs > 1 ? "  runs " + std::to_string(runs_finished_) + "/" + std::to_string(runs) : "";
    if (final) {
        std::snprintf(stats, sizeof stats, "%s  loss %.3f%s  took %s", runs_text.c_str(),
                      s.train_loss, accuracy, format_duration(elapsed).c_str());
    } else {
        const double left = fraction > 0 ? elapsed * (1.0 - fraction) / fraction : 0.0;
        std::snprintf(stats, sizeof stats, "%s  epoch %d/%d  loss %.3f%s  %s left", runs_text.c_str(),
                      s.epoch, s.epochs, s.train_loss, accuracy, format_duration(left).c_str());
    }

    if (terminal_) {
        // Redrawing costs a write syscall; 10 per second is smooth enough.
        if (!final && now - last_draw_ < std::chrono::milliseconds(100)) return;
        last_draw_ = now;
        constexpr int width = 24;
        const int filled = static_cast<int>(fraction * width);
        std::string bar(static_cast<std::size_t>(filled), '#');
        bar.resize(width, '-');
        // \r returns to the line start, \x1b[K clears what a longer previous line left behind.
        std::printf("\r\x1b[K%-26s [%s] %3d%%%s%s", phase_.c_str(), bar.c_str(), static_cast<int>(fraction * 100),
                    stats, final ? "\n" : "");
    } else {
        const int decile = static_cast<int>(fraction * 10);
        if (!final && (decile < next_plain_decile_ || decile >= 10)) return;  // 100% is the final line
        next_plain_decile_ = decile + 1;
        std::printf("%-26s %3d%%%s\n", phase_.c_str(), static_cast<int>(fraction * 100), stats);
    }
    std::fflush(stdout);
}

}  // namespace demo
