#include "idx_reader.hpp"

#include <zlib.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

namespace demo {
namespace {

constexpr const char* package_hint =
    " (the Fashion-MNIST files come from the Debian package dataset-fashion-mnist:"
    " run scripts/setup or `apt-get install dataset-fashion-mnist`)";

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& what) {
    throw std::runtime_error(file.string() + ": " + what + package_hint);
}

struct gz_closer {
    void operator()(gzFile_s* f) const { gzclose(f); }
};
using gz_file = std::unique_ptr<gzFile_s, gz_closer>;

gz_file open(const std::filesystem::path& file) {
    // gzopen also reads an uncompressed file transparently, so a user who gunzipped the files still works.
    gz_file f(gzopen(file.c_str(), "rb"));
    if (!f) fail(file, std::string("cannot open: ") + std::strerror(errno));
    return f;
}

void read_exactly(gzFile_s* f, const std::filesystem::path& file, void* out, std::size_t bytes) {
    auto* dst = static_cast<unsigned char*>(out);
    while (bytes > 0) {
        // gzread takes an unsigned int count: read in chunks so files over 4 GiB would still work.
        const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(bytes, 1u << 30));
        const int got = gzread(f, dst, chunk);
        if (got <= 0) {
            int code = 0;
            const char* msg = gzerror(f, &code);
            fail(file, got == 0 ? "file is truncated" : std::string("corrupt gzip data: ") + msg);
        }
        dst += got;
        bytes -= static_cast<std::size_t>(got);
    }
}

// Reading one byte past the payload makes zlib verify the gzip trailer (CRC-32 and length); without
// it a flipped bit in the data would go unnoticed.
void expect_end(gzFile_s* f, const std::filesystem::path& file) {
    unsigned char extra = 0;
    const int got = gzread(f, &extra, 1);
    if (got > 0) fail(file, "has trailing data after the IDX payload");
    if (got < 0) {
        int code = 0;
        fail(file, std::string("corrupt gzip data: ") + gzerror(f, &code));
    }
}

std::uint32_t big_endian(const std::array<unsigned char, 4>& b) {
    return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
}

std::uint32_t read_u32(gzFile_s* f, const std::filesystem::path& file) {
    std::array<unsigned char, 4> b{};
    read_exactly(f, file, b.data(), b.size());
    return big_endian(b);
}

}  // namespace

idx_images read_idx_images(const std::filesystem::path& file) {
    gz_file f = open(file);
    if (const auto magic = read_u32(f.get(), file); magic != 0x803)
        fail(file, "not an IDX image file (magic " + std::to_string(magic) + ", expected 2051)");
    idx_images out;
    out.count = read_u32(f.get(), file);
    out.rows = read_u32(f.get(), file);
    out.cols = read_u32(f.get(), file);
    if (out.rows != 28 || out.cols != 28)
        fail(file, "images are " + std::to_string(out.rows) + "x" + std::to_string(out.cols) + ", expected 28x28");
    out.pixels.resize(static_cast<std::size_t>(out.count * out.rows * out.cols));
    read_exactly(f.get(), file, out.pixels.data(), out.pixels.size());
    expect_end(f.get(), file);
    return out;
}

std::vector<std::uint8_t> read_idx_labels(const std::filesystem::path& file) {
    gz_file f = open(file);
    if (const auto magic = read_u32(f.get(), file); magic != 0x801)
        fail(file, "not an IDX label file (magic " + std::to_string(magic) + ", expected 2049)");
    std::vector<std::uint8_t> labels(read_u32(f.get(), file));
    read_exactly(f.get(), file, labels.data(), labels.size());
    expect_end(f.get(), file);
    for (std::size_t i = 0; i < labels.size(); ++i)
        if (labels[i] > 9) fail(file, "label " + std::to_string(labels[i]) + " at index " + std::to_string(i) + " is not a class 0..9");
    return labels;
}

}  // namespace demo
