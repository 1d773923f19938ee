// distill/workspace.hpp - room a caller lends the loss calls for the student's exponentials.
//
// A statistics-first loss (forward KL, the distillation loss with it, the cross-entropy) computes
// the student's exponentials e_q in its first sweep and needs them again in the gradient sweep.
// Rows of one block (C <= 1024) keep them on the stack; a longer row's do not fit there (128 KiB for
// 32000 float classes), so without a workspace its gradient sweep computes them again: 3
// exponentials an element where 2 would do. With one, that sweep reads them back.
//
// Sized once and reused, never allocated by a call. It holds `slots` rows of up to `max_classes`
// values (float or double). A call takes one free slot for each piece of work it runs at a time
// (a thread of the executor; a call of at most 8 rows over 1024 classes, whose rows are cut across
// threads, one per row) and gives them back before it returns; work that finds no slot free computes the
// exponentials again. Both give the same bits, so results never depend on the workspace, the
// thread count or the other calls sharing it. Thread-safe: calls on several threads may share one.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace distill {

class workspace {
public:
    static constexpr std::ptrdiff_t max_slots = 64;

    // No slots: every call computes the exponentials again.
    workspace() = default;
    // `slots` in [0, 64], `max_classes` >= 0; throws std::bad_alloc like operator new.
    workspace(std::ptrdiff_t slots, std::ptrdiff_t max_classes)
        : slots_(slots < 0 ? 0 : slots > max_slots ? max_slots : slots),
          max_classes_(max_classes < 0 ? 0 : max_classes),
          stride_((max_classes_ * static_cast<std::ptrdiff_t>(sizeof(double)) + alignment - 1) / alignment * alignment),
          storage_(slots_ > 0 && stride_ > 0
                       ? new (std::align_val_t(alignment)) std::byte[static_cast<std::size_t>(slots_ * stride_)]
                       : nullptr),
          free_(!storage_ ? 0 : slots_ == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << slots_) - 1) {}
    workspace(const workspace&) = delete;  // calls may hold its slots: it stays where it was made
    workspace& operator=(const workspace&) = delete;

    std::ptrdiff_t slots() const noexcept { return slots_; }
    std::ptrdiff_t max_classes() const noexcept { return max_classes_; }

    // ---- for the library's scheduler ----

    // A free slot for a row of up to max_classes() values of type T (float or double), or null when
    // every slot is taken. Give it back with release().
    template <class T>
    T* acquire() noexcept {
        static_assert(sizeof(T) <= sizeof(double));
        std::uint64_t free = free_.load(std::memory_order_relaxed);
        while (free != 0) {
            const std::uint64_t bit = free & (~free + 1);  // the lowest free slot
            if (free_.compare_exchange_weak(free, free & ~bit, std::memory_order_acquire, std::memory_order_relaxed))
                return reinterpret_cast<T*>(storage_.get() + std::countr_zero(bit) * stride_);
        }
        return nullptr;
    }
    template <class T>
    void release(T* slot) noexcept {
        if (!slot) return;
        const auto at = (reinterpret_cast<std::byte*>(slot) - storage_.get()) / stride_;
        free_.fetch_or(std::uint64_t{1} << at, std::memory_order_release);
    }

private:
    static constexpr std::ptrdiff_t alignment = 64;  // a cache line: every slot starts on one
    struct aligned_delete {
        void operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t(alignment)); }
    };
    std::ptrdiff_t slots_ = 0, max_classes_ = 0, stride_ = 0;  // stride_: bytes per slot
    std::unique_ptr<std::byte[], aligned_delete> storage_;
    std::atomic<std::uint64_t> free_{0};  // bit i set: slot i is free
};

}  // namespace distill
