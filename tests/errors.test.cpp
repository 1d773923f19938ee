// Every bad input gets its exception type and a message naming the argument, the value and what
// was expected; the non-throwing twins return the same as a status.
#include <catch2/catch.hpp>

#include <limits>
#include <string>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

using distill_test::matrix;
using Catch::Contains;

TEST_CASE("bad options are refused at construction with the value named", "[errors]") {
    using kd = distill::distillation_loss<float>;
    CHECK_THROWS_AS(kd({.temperature = 0}), std::invalid_argument);
    CHECK_THROWS_WITH(kd({.temperature = -2}), Contains("temperature must be in [0.001, 1000], got -2"));
    CHECK_THROWS_WITH(kd({.temperature = std::numeric_limits<double>::infinity()}), Contains("got inf"));
    CHECK_THROWS_WITH(kd({.temperature = std::numeric_limits<double>::quiet_NaN()}), Contains("got nan"));
    CHECK_THROWS_WITH(kd({.alpha = 1.5}), Contains("alpha must be in [0, 1], got 1.5"));
    CHECK_THROWS_WITH(kd({.alpha = -0.1}), Contains("got -0.1"));
    CHECK_THROWS_WITH(kd({.label_smoothing = 1}), Contains("label_smoothing must be in [0, 1), got 1"));
    CHECK_THROWS_WITH(kd({.reduce = distill::reduction::divide_by, .normalizer = 0}),
                      Contains("normalizer must be finite and > 0 for reduction::divide_by, got 0"));
    CHECK_THROWS_WITH(distill::kl_divergence<float>({.temperature = 0}), Contains("kl_divergence: temperature"));
    CHECK_THROWS_WITH(distill::cross_entropy<float>({.label_smoothing = -1}), Contains("cross_entropy: label_smoothing"));
}

TEST_CASE("shape mismatches name both shapes", "[errors]") {
    const auto s = distill_test::random_logits<float>(4, 10, 1);
    const auto t = distill_test::random_logits<float>(4, 11, 2);
    const auto y = distill_test::random_labels(4, 10, 3);
    matrix<float> g(4, 10), g_bad(3, 10);
    distill::distillation_loss<float> kd({.temperature = 2});
    CHECK_THROWS_WITH(kd.loss(s, t, y), Contains("teacher logits are 4 x 11 but student logits are 4 x 10"));
    CHECK_THROWS_WITH(kd.loss_and_grad(s, s, y, g_bad), Contains("gradient buffer is 3 x 10 but student logits are 4 x 10"));
    const std::vector<std::int64_t> y3{1, 2, 3};
    CHECK_THROWS_WITH(kd.loss(s, s, y3), Contains("labels have 3 entries but the logits have 4 rows"));
    const std::vector<std::uint8_t> mask{1, 0};
    CHECK_THROWS_WITH(kd.loss(s, s, y, {.mask = mask}), Contains("per_row.mask has 2 entries but the logits have 4 rows"));
    std::vector<double> losses(5);
    CHECK_THROWS_WITH(kd.loss(s, s, y, {.losses = losses}), Contains("per_row.losses has 5 entries"));
    distill::distillation_loss<float> none({.reduce = distill::reduction::none});
    CHECK_THROWS_WITH(none.loss(s, s, y), Contains("reduction::none needs per_row.losses with one entry per row (4)"));
    matrix<float> empty(4, 0);
    CHECK_THROWS_WITH(kd.loss(empty, empty, y), Contains("student logits have 0 classes (shape 4 x 0)"));
    const std::vector<std::int64_t> no_labels;
    CHECK_THROWS_WITH(kd.loss(s, s, no_labels), Contains("no labels given but alpha = 0.5"));
    CHECK_NOTHROW(distill::distillation_loss<float>({.alpha = 1}).loss(s, s, no_labels));
}

TEST_CASE("labels out of range are std::out_of_range naming row, value and range", "[errors]") {
    const auto s = distill_test::random_logits<float>(3, 5, 1);
    distill::cross_entropy<float> ce;
    const std::vector<std::int64_t> y{0, 7, 1};
    CHECK_THROWS_AS(ce.loss(s, y), std::out_of_range);
    CHECK_THROWS_WITH(ce.loss(s, y), Contains("label 7 at row 1 is out of range: classes are [0, 5) and ignore_index is -100"));
    const std::vector<int> negative{0, -1, 1};  // -1 is not the ignore_index (-100)
    CHECK_THROWS_WITH(ce.loss(s, negative), Contains("label -1 at row 1"));
    CHECK_NOTHROW(distill::cross_entropy<float>({.ignore_index = -1}).loss(s, negative));
}

TEST_CASE("a gradient buffer that overlaps an input is refused, unless it is the student logits themselves", "[errors]") {
    matrix<float> s = distill_test::random_logits<float>(4, 8, 1);
    const auto t = distill_test::random_logits<float>(4, 8, 2);
    distill::kl_divergence<float> kl;
    // Rows 0..2 against rows 1..3 of the same matrix: two rows shared, not the same view.
    CHECK_THROWS_WITH(kl.loss_and_grad(s.topRows(3), t.topRows(3), s.bottomRows(3)),
                      Contains("gradient buffer overlaps the student logits"));
    CHECK_NOTHROW(kl.loss_and_grad(s, t, s));  // in place (tests/row_weights.test.cpp checks its bits)
}

TEST_CASE("strided class dimensions are refused at run time, not copied", "[errors]") {
    matrix<float> big = distill_test::random_logits<float>(4, 16, 1);
    using strided = Eigen::Map<const matrix<float>, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
    const strided every_other(big.data(), 4, 8, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(16, 2));
    distill::kl_divergence<float> kl;
    CHECK_THROWS_WITH(kl.loss(every_other, every_other),
                      Contains("student logits: the class dimension must be contiguous (inner stride 1), got inner stride 2"));
}

TEST_CASE("the status twins report the same errors without throwing", "[errors]") {
    const auto s = distill_test::random_logits<float>(2, 3, 1);
    matrix<float> g(2, 3);
    const std::vector<std::int64_t> y{0, 9};
    distill::distillation_loss<float> kd;
    distill::loss_value v;
    const distill::status st = kd.try_loss_and_grad(s, s, y, g, v);
    CHECK_FALSE(st.ok());
    CHECK(st.code() == distill::errc::out_of_range);
    CHECK_THAT(st.message(), Contains("label 9 at row 1"));
    const std::vector<std::int64_t> good{0, 2};
    CHECK(kd.try_loss_and_grad(s, s, good, g, v).ok());
    CHECK(v.rows_counted == 2);
    CHECK(distill::try_softmax(s, g, -1.0).code() == distill::errc::invalid_argument);
}

// A status keeps its message only up to the terminating zero: copies and assignments must carry
// exactly that, an ok status reads as an empty message, and a message longer than the storage is
// cut, still terminated.
TEST_CASE("a status's message survives copies and assignments, and an ok status's is empty", "[errors]") {
    const distill::status ok;
    CHECK(ok.ok());
    CHECK(std::string(ok.message()).empty());

    const distill::status failed = distill::status::error(distill::errc::out_of_range, "row %d: %s", 7, "bad label");
    distill::status copy = failed;
    CHECK(copy.code() == distill::errc::out_of_range);
    CHECK(std::string(copy.message()) == "row 7: bad label");

    distill::status assigned;
    assigned = copy;
    CHECK(std::string(assigned.message()) == "row 7: bad label");
    assigned = ok;  // a shorter message over a longer one: the zero comes first
    CHECK(assigned.ok());
    CHECK(std::string(assigned.message()).empty());
    copy = *&copy;  // self-assignment keeps the message
    CHECK(std::string(copy.message()) == "row 7: bad label");

    const std::string long_text(1000, 'x');
    const distill::status cut = distill::status::error(distill::errc::invalid_argument, "%s", long_text.c_str());
    const distill::status cut_copy = cut;
    const std::string kept = cut_copy.message();
    CHECK(kept.size() < long_text.size());
    CHECK(kept == long_text.substr(0, kept.size()));
    CHECK(kept.size() > 100);
}
