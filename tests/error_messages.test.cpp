// The catalogue of docs/api.md ("Errors", "At run time"), one row at a time: each message is
// produced once and compared in full, through the status twin (its errc) and through the throwing
// call (its exception type, the same text); bad options, refused by the throwing constructor, only
// through it. tests/errors.test.cpp checks the parts of messages
// that vary with the input; this file pins every message whole, so that a reworded message is a
// conscious change of docs/api.md too.
#include <catch2/catch.hpp>

#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <distill/distill.hpp>

#include "test_support.hpp"

using distill_test::matrix;

namespace {

struct catalogue_entry {
    const char* row;  // which row of the table
    std::function<distill::status()> try_call;
    std::function<void()> throwing_call;
    distill::errc code;
    std::string message;
};

const float minus_inf = -std::numeric_limits<float>::infinity();
using strided = Eigen::Map<const matrix<float>, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
using strided_out = Eigen::Map<matrix<float>, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;

}  // namespace

TEST_CASE("every run-time error message of docs/api.md, whole, through both APIs", "[errors][messages]") {
    const matrix<float> s = distill_test::random_logits<float>(2, 3, 1), t = distill_test::random_logits<float>(2, 3, 2);
    matrix<float> wide = distill_test::random_logits<float>(2, 6, 3);
    const strided every_other(wide.data(), 2, 3, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(6, 2));
    strided_out every_other_out(wide.data(), 2, 3, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(6, 2));
    const std::vector<std::int64_t> y{0, 2}, no_labels, bad_label{0, 3}, three{0, 1, 2};
    const std::vector<std::uint8_t> short_mask{1};
    std::vector<double> long_losses(5);
    matrix<float> g(2, 3), g_bad(3, 3), empty(2, 0), out_bad(2, 4);
    matrix<float> st(2, 6);  // student and gradient buffer in one block, for the overlap
    st.leftCols(3) = s;
    matrix<float> both_masked = s;
    both_masked.row(1).setConstant(minus_inf);
    matrix<float> with_nan = s, with_inf = t;
    Eigen::MatrixXi labels_by_column(2, 2);  // column-major: a row's labels are 2 apart
    labels_by_column << 0, 2,
                        1, 1;
    using tensor3 = Eigen::TensorMap<Eigen::Tensor<const float, 3, Eigen::RowMajor>>;
    const matrix<float> six = distill_test::random_logits<float>(6, 1, 4);
    const tensor3 s3(six.data(), 2, 3, 1), t3_swapped(six.data(), 3, 2, 1);
    const std::vector<std::int64_t> y6{0, 0, 0, 0, 0, 0};
    matrix<float> shifted(3, 3);  // softmax input rows 0-1 and output rows 1-2
    with_nan(1, 2) = std::numeric_limits<float>::quiet_NaN();
    with_inf(0, 1) = std::numeric_limits<float>::infinity();

    // Functors built without the throwing constructor's check: the calls report the options too.
    const distill::distillation_loss<float> kd({.temperature = 2});
    const distill::kl_divergence<float> kl({.temperature = 2});
    const distill::cross_entropy<float> ce;
    const distill::distillation_loss<float> none({.reduce = distill::reduction::none});
    const distill::distillation_loss<float> checked({.temperature = 2, .check_finite = true});
    distill::workspace small_ws(1, 2);
    const distill::kl_divergence<float> small_ws_kl({.temperature = 2, .workspace = &small_ws});
    distill::loss_value v;

    // Bad options: the throwing constructor refuses them, so there is no functor to call try_ on;
    // under -fno-exceptions the first call reports them instead (tests/no_exceptions checks that).
    const auto refused = [](distill::distillation_options o) {
        return std::function<void()>([o] { const distill::distillation_loss<float> refused_here(o); });
    };
    const std::function<distill::status()> no_status_path;

    using distill::errc;
    const std::vector<catalogue_entry> catalogue = {
        {"inner stride (student)", [&] { return kl.try_loss(every_other, t, v); }, [&] { kl.loss(every_other, t); },
         errc::invalid_argument, "student logits: the class dimension must be contiguous (inner stride 1), got inner stride 2"},
        {"inner stride (teacher)", [&] { return kl.try_loss(s, every_other, v); }, [&] { kl.loss(s, every_other); },
         errc::invalid_argument, "teacher logits: the class dimension must be contiguous (inner stride 1), got inner stride 2"},
        {"inner stride (gradient buffer)", [&] { return kl.try_loss_and_grad(s, t, every_other_out, v); },
         [&] { kl.loss_and_grad(s, t, every_other_out); }, errc::invalid_argument,
         "gradient buffer: the class dimension must be contiguous (inner stride 1), got inner stride 2"},
        {"inner stride (softmax output)", [&] { return distill::try_softmax(s, every_other_out); },
         [&] { distill::softmax(s, every_other_out); }, errc::invalid_argument,
         "output: the class dimension must be contiguous (inner stride 1), got inner stride 2"},
        {"labels stride", [&] { return kd.try_loss(s, t, labels_by_column.row(0), v); },
         [&] { kd.loss(s, t, labels_by_column.row(0)); }, errc::invalid_argument,
         "labels: the entries must be contiguous (inner stride 1), got inner stride 2"},
        {"labels in two dimensions", [&] { return kd.try_loss(s, t, labels_by_column, v); },
         [&] { kd.loss(s, t, labels_by_column); }, errc::invalid_argument, "labels: must be one row or one column, got 2 x 2"},
        {"temperature", no_status_path, refused({.temperature = -2}), errc::invalid_argument,
         "distillation_loss: temperature must be in [0.001, 1000], got -2"},
        {"alpha", no_status_path, refused({.alpha = 1.5}), errc::invalid_argument,
         "distillation_loss: alpha must be in [0, 1], got 1.5"},
        {"label_smoothing", no_status_path, refused({.label_smoothing = 1}), errc::invalid_argument,
         "distillation_loss: label_smoothing must be in [0, 1), got 1"},
        {"normalizer", no_status_path, refused({.reduce = distill::reduction::divide_by, .normalizer = 0}),
         errc::invalid_argument, "distillation_loss: normalizer must be finite and > 0 for reduction::divide_by, got 0"},
        {"0 classes", [&] { return ce.try_loss(empty, y, v); }, [&] { ce.loss(empty, y); }, errc::invalid_argument,
         "cross_entropy: student logits have 0 classes (shape 2 x 0); at least 1 class is needed"},
        {"teacher shape", [&] { return kd.try_loss(s, wide, y, v); }, [&] { kd.loss(s, wide, y); }, errc::invalid_argument,
         "distillation_loss: teacher logits are 2 x 6 but student logits are 2 x 3; they must match"},
        {"teacher shape (tensors)", [&] { return kd.try_loss(s3, t3_swapped, y6, v); }, [&] { kd.loss(s3, t3_swapped, y6); },
         errc::invalid_argument,
         "distillation_loss: teacher logits are [3, 2, 1] but student logits are [2, 3, 1]; they must match"},
        {"labels size", [&] { return kd.try_loss(s, t, three, v); }, [&] { kd.loss(s, t, three); }, errc::invalid_argument,
         "distillation_loss: labels have 3 entries but the logits have 2 rows"},
        {"no labels", [&] { return kd.try_loss(s, t, no_labels, v); }, [&] { kd.loss(s, t, no_labels); },
         errc::invalid_argument,
         "distillation_loss: no labels given but alpha = 0.5; the hard-label term needs one label per row (without labels, "
         "alpha must be 1: pure distillation)"},
        {"no labels (cross_entropy)", [&] { return ce.try_loss(s, no_labels, v); }, [&] { ce.loss(s, no_labels); },
         errc::invalid_argument,
         "cross_entropy: labels are required, one per row (2 rows), got none"},
        {"gradient shape", [&] { return kd.try_loss_and_grad(s, t, y, g_bad, v); }, [&] { kd.loss_and_grad(s, t, y, g_bad); },
         errc::invalid_argument, "distillation_loss: gradient buffer is 3 x 3 but student logits are 2 x 3; they must match"},
        {"overlap (student)",
         [&] { auto gs = st.middleCols(1, 3); return kl.try_loss_and_grad(st.leftCols(3), t, gs, v); },
         [&] { auto gs = st.middleCols(1, 3); kl.loss_and_grad(st.leftCols(3), t, gs); }, errc::invalid_argument,
         "kl_divergence: the gradient buffer overlaps the student logits; it must be a separate buffer or the "
         "student logits themselves"},
        {"overlap (teacher)",
         [&] { auto gt = st.rightCols(3); return kl.try_loss_and_grad(s, st.rightCols(3), gt, v); },
         [&] { auto gt = st.rightCols(3); kl.loss_and_grad(s, st.rightCols(3), gt); }, errc::invalid_argument,
         "kl_divergence: the gradient buffer overlaps the teacher logits; it must be a separate buffer or the "
         "student logits themselves"},
        {"mask size", [&] { return kd.try_loss(s, t, y, v, {.mask = short_mask}); },
         [&] { kd.loss(s, t, y, {.mask = short_mask}); }, errc::invalid_argument,
         "distillation_loss: per_row.mask has 1 entries but the logits have 2 rows"},
        {"losses size", [&] { return kd.try_loss(s, t, y, v, {.losses = long_losses}); },
         [&] { kd.loss(s, t, y, {.losses = long_losses}); }, errc::invalid_argument,
         "distillation_loss: per_row.losses has 5 entries but the logits have 2 rows"},
        {"reduction::none without losses", [&] { return none.try_loss(s, t, y, v); }, [&] { none.loss(s, t, y); },
         errc::invalid_argument, "distillation_loss: reduction::none needs per_row.losses with one entry per row (2)"},
        {"label out of range", [&] { return kd.try_loss(s, t, bad_label, v); }, [&] { kd.loss(s, t, bad_label); },
         errc::out_of_range,
         "distillation_loss: label 3 at row 1 is out of range: classes are [0, 3) and ignore_index is -100"},
        {"check_finite NaN", [&] { return checked.try_loss(with_nan, t, y, v); }, [&] { checked.loss(with_nan, t, y); },
         errc::invalid_argument,
         "distillation_loss: student logits: element (1, 2) is NaN (check_finite rejects NaN and +inf; -inf is a legal "
         "class mask)"},
        {"check_finite +inf", [&] { return checked.try_loss(s, with_inf, y, v); }, [&] { checked.loss(s, with_inf, y); },
         errc::invalid_argument,
         "distillation_loss: teacher logits: element (0, 1) is +inf (check_finite rejects NaN and +inf; -inf is a legal "
         "class mask)"},
        {"all -inf row (student)", [&] { return kd.try_loss_and_grad(both_masked, t, y, g, v); },
         [&] { kd.loss_and_grad(both_masked, t, y, g); }, errc::invalid_argument,
         "distillation_loss: row 1 of the student logits is entirely -inf (every class masked), so its softmax is undefined"},
        {"all -inf row (teacher)", [&] { return kl.try_loss(s, both_masked, v); }, [&] { kl.loss(s, both_masked); },
         errc::invalid_argument,
         "kl_divergence: row 1 of the teacher logits is entirely -inf (every class masked), so its softmax is undefined"},
        {"workspace too small", [&] { return small_ws_kl.try_loss_and_grad(s, t, g, v); },
         [&] { small_ws_kl.loss_and_grad(s, t, g); }, errc::invalid_argument,
         "kl_divergence: the workspace holds rows of up to 2 classes; this call's rows have 3"},
        {"softmax temperature", [&] { return distill::try_softmax(s, g, 0.0); }, [&] { distill::softmax(s, g, 0.0); },
         errc::invalid_argument, "softmax: temperature must be in [0.001, 1000], got 0"},
        {"log_softmax temperature", [&] { return distill::try_log_softmax(s, g, -1.0); },
         [&] { distill::log_softmax(s, g, -1.0); }, errc::invalid_argument,
         "log_softmax: temperature must be in [0.001, 1000], got -1"},
        {"softmax 0 classes", [&] { matrix<float> o(2, 0); return distill::try_softmax(empty, o); },
         [&] { distill::softmax(empty); }, errc::invalid_argument,
         "softmax: logits have 0 classes (shape 2 x 0); at least 1 is needed"},
        {"softmax output shape", [&] { return distill::try_softmax(s, out_bad); }, [&] { distill::softmax(s, out_bad); },
         errc::invalid_argument, "softmax: output is 2 x 4 but logits are 2 x 3; they must match"},
        {"softmax partial overlap", [&] { return distill::try_softmax(shifted.topRows(2), shifted.bottomRows(2)); },
         [&] { distill::softmax(shifted.topRows(2), shifted.bottomRows(2)); }, errc::invalid_argument,
         "softmax: the output partly overlaps the logits; it must be the logits themselves (in place) or a separate "
         "buffer"},
        {"softmax all -inf row", [&] { return distill::try_log_softmax(both_masked, g); },
         [&] { distill::log_softmax(both_masked); }, errc::invalid_argument,
         "log_softmax: row 1 of the logits is entirely -inf (every class masked), so its softmax is undefined"},
    };

    for (const auto& entry : catalogue) {
        INFO(entry.row);
        if (entry.try_call) {
            const distill::status status = entry.try_call();
            CHECK(status.code() == entry.code);
            CHECK(std::string(status.message()) == entry.message);
        }
        try {
            entry.throwing_call();
            FAIL("no exception");
        } catch (const std::out_of_range& e) {
            CHECK(entry.code == errc::out_of_range);
            CHECK(std::string(e.what()) == entry.message);
        } catch (const std::invalid_argument& e) {
            CHECK(entry.code == errc::invalid_argument);
            CHECK(std::string(e.what()) == entry.message);
        }
    }
}

TEST_CASE("messages fit their buffer: the longest ones arrive whole", "[errors][messages]") {
    // status keeps 320 characters; the longest message, with the largest numbers it can carry,
    // must not be cut. Every message above ends with its last word; here the extremes.
    const matrix<float> s = distill_test::random_logits<float>(1, 3, 1);
    const std::vector<std::int64_t> huge_label{std::numeric_limits<std::int64_t>::min()};
    distill::cross_entropy<float> ce({.ignore_index = std::numeric_limits<std::int64_t>::max()});
    distill::loss_value v;
    const distill::status st = ce.try_loss(s, huge_label, v);
    CHECK(std::string(st.message()) ==
          "cross_entropy: label -9223372036854775808 at row 0 is out of range: classes are [0, 3) and ignore_index is "
          "9223372036854775807");
    const std::vector<std::int64_t> none;
    distill::distillation_loss<float> kd({.alpha = 0.12345678901234568});  // 17 significant digits
    const std::string longest = kd.try_loss(s, s, none, v).message();
    CHECK(longest ==
          "distillation_loss: no labels given but alpha = 0.12345678901234568; the hard-label term needs one label per row "
          "(without labels, alpha must be 1: pure distillation)");
    // The longest shape message: two rank-3 tensors with the largest extents, well inside the 319.
    constexpr std::ptrdiff_t big = std::numeric_limits<std::ptrdiff_t>::max();
    distill::detail::matrix_view<const float> a{nullptr, 1, 1, 1, {3, {big, big, big}}};
    const std::string shape = distill::detail::format_shape(a).c_str();
    CHECK(shape == "[9223372036854775807, 9223372036854775807, 9223372036854775807]");
    CHECK(std::string("distillation_loss: gradient buffer is " + shape + " but student logits are " + shape +
                      "; they must match")
              .size() < 319);
}
