// One progress bar per phase: epoch, loss, accuracy and time left. Redrawn in place on a terminal;
// when stdout is a file or a pipe (CI logs) it prints a plain line every 10% instead, because
// carriage returns make a log unreadable.
#pragma once

#include "trainer.hpp"

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace demo {

class progress_bar {
public:
    // `runs` trainings of `steps_per_run` steps each make up the phase (they may run concurrently).
    // `accuracy_label` names what the accuracy shown was measured on ("test acc", "val acc").
    progress_bar(std::string phase, int runs, std::int64_t steps_per_run, std::string accuracy_label = "test acc");
    ~progress_bar();
    progress_bar(const progress_bar&) = delete;
    progress_bar& operator=(const progress_bar&) = delete;

    // Thread-safe: training threads call it with their own run index.
    void update(int run, const epoch_summary& s);
    // Prints the final line with the phase's wall time (also done by the destructor).
    void finish(const std::string& note = "");

    static bool stdout_is_terminal();

private:
    void draw(const epoch_summary& last, bool final);

    std::string phase_;
    std::string accuracy_label_;
    std::vector<std::int64_t> steps_done_;
    std::int64_t steps_total_;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point last_draw_{};
    epoch_summary last_{};
    int next_plain_decile_ = 1;
    int runs_finished_ = 0;
    bool terminal_;
    bool finished_ = false;
    std::mutex mutex_;
};

std::string format_duration(double seconds);

}  // namespace demo
