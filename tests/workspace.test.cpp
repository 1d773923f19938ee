// A workspace lends the loss calls room for the student's exponentials of long rows; it must change
// nothing but the work done. Every call here is compared bitwise (loss, per-row losses, gradient)
// against the same call without a workspace, which computes those exponentials again from sweep 1's
// own block maxima. The expected values are those calls' results, not constants: the claim under
// test is that the two paths are the same arithmetic.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

using distill_test::matrix;
using distill_test::same_bits;

namespace {

// Runs `call(options, grad, losses)` without and with the workspace and compares the results.
template <class T, class Options, class Call>
void check_same_with_workspace(Options options, distill::workspace& ws, Eigen::Index N, Eigen::Index C, Call&& call) {
    matrix<T> g_without(N, C), g_with(N, C);
    std::vector<double> l_without(static_cast<std::size_t>(N)), l_with(static_cast<std::size_t>(N));
    const distill::loss_value without = call(options, g_without, l_without);
    options.workspace = &ws;
    const distill::loss_value with = call(options, g_with, l_with);
    CHECK(std::memcmp(&without.total, &with.total, sizeof(double)) == 0);
    CHECK(l_without == l_with);
    CHECK(same_bits(g_without, g_with));
}

// The shapes that take each way of running long rows: a few rows cut across work items (N <= 8),
// many rows run in pieces, a row of one block (C <= 1024, which never uses the workspace) and a row
// that is not a whole number of vectors.
const std::vector<std::pair<Eigen::Index, Eigen::Index>> shapes = {{3, 5000}, {70, 3001}, {9, 1000}, {2, 32000}};

}  // namespace

TEST_CASE("distillation_loss: the same bits with and without a workspace", "[workspace]") {
    for (const auto& [N, C] : shapes) {
        const auto s = distill_test::random_logits<float>(N, C, 61);
        const auto t = distill_test::random_logits<float>(N, C, 62);
        const auto y = distill_test::random_labels(N, C, 63);
        distill::workspace ws(4, 32000);
        // A whole T takes r = q^T from the parked e_q; 2.5 takes r's own exponential.
        for (double T : {1.0, 2.5, 4.0}) {
            INFO(N << " x " << C << ", T = " << T);
            check_same_with_workspace<float>(
                distill::distillation_options{.temperature = T, .alpha = 0.6, .reduce = distill::reduction::none}, ws, N, C,
                [&](const distill::distillation_options& o, matrix<float>& g, std::vector<double>& l) {
                    return distill::distillation_loss<float>(o).loss_and_grad(s, t, y, g, {.losses = l});
                });
        }
        INFO(N << " x " << C << ", label smoothing and class weights");
        std::vector<double> weights(static_cast<std::size_t>(C));
        for (std::size_t c = 0; c < weights.size(); ++c) weights[c] = 0.5 + static_cast<double>(c % 7) / 4;
        check_same_with_workspace<float>(
            distill::distillation_options{.temperature = 2.0, .label_smoothing = 0.1, .class_weights = weights}, ws, N, C,
            [&](const distill::distillation_options& o, matrix<float>& g, std::vector<double>& l) {
                return distill::distillation_loss<float>(o).loss_and_grad(s, t, y, g, {.losses = l});
            });
    }
}

TEST_CASE("kl_divergence, forward KL divergence_loss and cross_entropy: the same bits with a workspace",
          "[workspace]") {
    for (const auto& [N, C] : shapes) {
        INFO(N << " x " << C);
        const auto s = distill_test::random_logits<double>(N, C, 64);
        const auto t = distill_test::random_logits<double>(N, C, 65);
        const auto y = distill_test::random_labels(N, C, 66);
        distill::workspace ws(2, C);
        check_same_with_workspace<double>(
            distill::kl_options{.temperature = 4.0, .reduce = distill::reduction::none}, ws, N, C,
            [&](const distill::kl_options& o, matrix<double>& g, std::vector<double>& l) {
                return distill::kl_divergence<double>(o).loss_and_grad(s, t, g, {.losses = l});
            });
        check_same_with_workspace<double>(
            distill::divergence_options{.temperature = 3.0, .reduce = distill::reduction::none}, ws, N, C,
            [&](const distill::divergence_options& o, matrix<double>& g, std::vector<double>& l) {
                return distill::divergence_loss<double>(o).loss_and_grad(s, t, g, {.losses = l});
            });
        // Reverse KL runs normalise-first and leaves the workspace alone.
        check_same_with_workspace<double>(
            distill::divergence_options{.divergence = distill::reverse_kl{}, .temperature = 3.0}, ws, N, C,
            [&](const distill::divergence_options& o, matrix<double>& g, std::vector<double>& l) {
                return distill::divergence_loss<double>(o).loss_and_grad(s, t, g, {.losses = l});
            });
        check_same_with_workspace<double>(
            distill::cross_entropy_options{.label_smoothing = 0.05, .reduce = distill::reduction::none}, ws, N, C,
            [&](const distill::cross_entropy_options& o, matrix<double>& g, std::vector<double>& l) {
                return distill::cross_entropy<double>(o).loss_and_grad(s, y, g, {.losses = l});
            });
    }
}

TEST_CASE("a workspace serves 16-bit logits and a gradient written over the student", "[workspace]") {
    const Eigen::Index N = 5, C = 4099;
    const auto s = distill_test::random_logits<Eigen::bfloat16>(N, C, 67);
    const auto t = distill_test::random_logits<Eigen::bfloat16>(N, C, 68);
    const auto y = distill_test::random_labels(N, C, 69);
    distill::workspace ws(1, C);  // bfloat16 computes in float: a row of C floats
    check_same_with_workspace<Eigen::bfloat16>(
        distill::distillation_options{.temperature = 4.0}, ws, N, C,
        [&](const distill::distillation_options& o, matrix<Eigen::bfloat16>& g, std::vector<double>& l) {
            return distill::distillation_loss<Eigen::bfloat16>(o).loss_and_grad(s, t, y, g, {.losses = l});
        });

    // In place: the gradient overwrites the student logits (nothing of e_p can be parked there).
    const auto s_f = distill_test::random_logits<float>(N, C, 70);
    const auto t_f = distill_test::random_logits<float>(N, C, 71);
    matrix<float> without = s_f, with = s_f;
    const distill::distillation_loss<float> plain({.temperature = 2.0});
    const distill::distillation_loss<float> lent({.temperature = 2.0, .workspace = &ws});
    const double l_without = plain.loss_and_grad(without, t_f, y, without).total;
    const double l_with = lent.loss_and_grad(with, t_f, y, with).total;
    CHECK(std::memcmp(&l_without, &l_with, sizeof(double)) == 0);
    CHECK(same_bits(without, with));
}

TEST_CASE("threads share a workspace with fewer slots than they are: the same bits", "[workspace]") {
    // 7 threads, 2 slots: most pieces find no slot free and compute the exponentials again. A call
    // of 64 rows runs in 64 pieces; one of 4 rows cuts them across 32 work items, a slot per row.
    for (Eigen::Index N : {64, 4}) {
        const Eigen::Index C = 2500;
        INFO(N << " rows");
        const auto s = distill_test::random_logits<float>(N, C, 72);
        const auto t = distill_test::random_logits<float>(N, C, 73);
        const auto y = distill_test::random_labels(N, C, 74);
        distill::workspace ws(2, C);
        const distill_test::thread_executor seven{7};
        check_same_with_workspace<float>(
            distill::distillation_options{.temperature = 4.0, .reduce = distill::reduction::none}, ws, N, C,
            [&](const distill::distillation_options& o, matrix<float>& g, std::vector<double>& l) {
                return distill::distillation_loss<float>(o).loss_and_grad(seven, s, t, y, g, {.losses = l});
            });
        // Every slot was given back: a call on one thread gets one again (the sequential result).
        matrix<float> g1(N, C), g2(N, C);
        const distill::distillation_loss<float> lent({.temperature = 4.0, .workspace = &ws});
        lent.loss_and_grad(seven, s, t, y, g1);
        lent.loss_and_grad(s, t, y, g2);
        CHECK(same_bits(g1, g2));
        CHECK(ws.acquire<float>() != nullptr);
    }
}

TEST_CASE("a workspace too small for the call's rows is an error, and one without slots is no workspace", "[workspace]") {
    const Eigen::Index N = 3, C = 3000;
    const auto s = distill_test::random_logits<float>(N, C, 75);
    const auto t = distill_test::random_logits<float>(N, C, 76);
    matrix<float> g(N, C), g_plain(N, C);
    distill::workspace small(2, C - 1);
    const distill::kl_divergence<float> kl({.workspace = &small});
    distill::loss_value v;
    const distill::status st = kl.try_loss_and_grad(s, t, g, v);
    CHECK(!st.ok());
    CHECK(st.code() == distill::errc::invalid_argument);
    CHECK_THAT(std::string(st.message()),
               Catch::Contains("workspace holds rows of up to 2999 classes") && Catch::Contains("rows have 3000"));
    // loss() needs no room: the same workspace is no error there.
    CHECK(kl.try_loss(s, t, v).ok());

    distill::workspace none;
    CHECK(none.slots() == 0);
    CHECK(none.acquire<float>() == nullptr);
    const distill::kl_divergence<float> with_none({.workspace = &none});
    const distill::kl_divergence<float> plain;
    const double a = with_none.loss_and_grad(s, t, g).total, b = plain.loss_and_grad(s, t, g_plain).total;
    CHECK(std::memcmp(&a, &b, sizeof(double)) == 0);
    CHECK(same_bits(g, g_plain));
}

TEST_CASE("a workspace's slots are handed out once each and come back", "[workspace]") {
    distill::workspace ws(3, 100);
    CHECK(ws.slots() == 3);
    CHECK(ws.max_classes() == 100);
    double* a = ws.acquire<double>();
    double* b = ws.acquire<double>();
    double* c = ws.acquire<double>();
    REQUIRE(a != nullptr);
    REQUIRE(b != nullptr);
    REQUIRE(c != nullptr);
    CHECK(ws.acquire<double>() == nullptr);  // all three taken
    // Distinct rows of 100 doubles, each on a cache line of its own.
    CHECK(std::abs(b - a) >= 100);
    CHECK(std::abs(c - b) >= 100);
    CHECK(reinterpret_cast<std::uintptr_t>(a) % 64 == 0);
    ws.release(b);
    CHECK(ws.acquire<double>() == b);
    ws.release(a);
    ws.release(b);
    ws.release(c);
    CHECK(ws.acquire<float>() != nullptr);
    CHECK(distill::workspace(100, 10).slots() == distill::workspace::max_slots);  // at most 64
}
