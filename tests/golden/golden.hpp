// tests/golden/golden.hpp - reads the PyTorch reference cases written by tests/golden/generate.py
// (golden.index, golden.bin) and tests/golden/generate_top_k.py (top_k.index, top_k.bin).
//
// <stem>.index is text (one `key value` line per field, a block per case from `case <name>` to `end`);
// array fields point into <stem>.bin as `<type> <byte offset> <count>`, little-endian. README.md beside
// this file has the format. Standard library only, so the loader cannot disagree with the library
// under test for a reason of its own.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace golden {

template <class T>
constexpr const char* type_tag() {
    if constexpr (std::is_same_v<T, float>) return "f32";
    else if constexpr (std::is_same_v<T, double>) return "f64";
    else if constexpr (std::is_same_v<T, std::int64_t>) return "i64";
    else if constexpr (std::is_same_v<T, std::uint8_t>) return "u8";
    else static_assert(sizeof(T) == 0, "golden .bin files hold f32, f64, i64 and u8 arrays only");
}

class golden_case {
public:
    std::string name;

    bool has(const std::string& key) const { return fields_.count(key) != 0; }

    const std::string& text(const std::string& key) const {
        auto it = fields_.find(key);
        if (it == fields_.end()) throw std::runtime_error("golden case '" + name + "' has no field '" + key + "'");
        return it->second;
    }

    // Decimal literals written by Python's repr() read back as exactly the same double.
    double number(const std::string& key) const {
        const std::string& s = text(key);
        char* end = nullptr;
        double v = std::strtod(s.c_str(), &end);
        if (end == s.c_str() || *end != '\0') bad(key, s);
        return v;
    }

    std::int64_t integer(const std::string& key) const {
        const std::string& s = text(key);
        char* end = nullptr;
        long long v = std::strtoll(s.c_str(), &end, 10);
        if (end == s.c_str() || *end != '\0') bad(key, s);
        return static_cast<std::int64_t>(v);
    }

    template <class T>
    std::vector<T> array(const std::string& key) const {
        std::istringstream in(text(key));
        std::string tag;
        std::size_t offset = 0, count = 0;
        if (!(in >> tag >> offset >> count)) bad(key, text(key));
        if (tag != type_tag<T>())
            throw std::runtime_error("golden case '" + name + "': field '" + key + "' is " + tag + ", not " +
                                     type_tag<T>());
        if (offset > blob_->size() || count > (blob_->size() - offset) / sizeof(T))
            throw std::runtime_error("golden case '" + name + "': field '" + key + "' runs past the .bin file");
        std::vector<T> out(count);
        if (count) std::memcpy(out.data(), blob_->data() + offset, count * sizeof(T));
        if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
            for (T& v : out) {
                unsigned char b[sizeof(T)];
                std::memcpy(b, &v, sizeof(T));
                for (std::size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(b[i], b[sizeof(T) - 1 - i]);
                std::memcpy(&v, b, sizeof(T));
            }
        }
        return out;
    }

private:
    friend std::vector<golden_case> load(const std::string& dir, const std::string& stem);

    [[noreturn]] void bad(const std::string& key, const std::string& value) const {
        throw std::runtime_error("golden case '" + name + "': cannot parse field '" + key + "': '" + value + "'");
    }

    std::map<std::string, std::string> fields_;
    std::shared_ptr<const std::vector<char>> blob_;
};

// Every case in <dir>/<stem>.index, with arrays read from <dir>/<stem>.bin.
inline std::vector<golden_case> load(const std::string& dir, const std::string& stem) {
    const std::string index_name = stem + ".index", bin_name = stem + ".bin";
    std::ifstream bin(dir + "/" + bin_name, std::ios::binary);
    if (!bin) throw std::runtime_error("cannot open " + dir + "/" + bin_name);
    auto blob = std::make_shared<const std::vector<char>>(std::istreambuf_iterator<char>(bin),
                                                          std::istreambuf_iterator<char>());
    std::ifstream index(dir + "/" + index_name);
    if (!index) throw std::runtime_error("cannot open " + dir + "/" + index_name);

    std::vector<golden_case> cases;
    golden_case* open = nullptr;
    std::string line;
    for (int number = 1; std::getline(index, line); ++number) {
        if (line.empty() || line[0] == '#') continue;
        auto space = line.find(' ');
        std::string key = line.substr(0, space);
        std::string value = space == std::string::npos ? std::string() : line.substr(space + 1);
        if (key == "case") {
            if (open) throw std::runtime_error(index_name + ":" + std::to_string(number) + ": case inside a case");
            open = &cases.emplace_back();
            open->name = value;
            open->blob_ = blob;
        } else if (key == "end") {
            if (!open) throw std::runtime_error(index_name + ":" + std::to_string(number) + ": end outside a case");
            open = nullptr;
        } else {
            if (!open) throw std::runtime_error(index_name + ":" + std::to_string(number) + ": field outside a case");
            open->fields_[key] = value;
        }
    }
    if (open) throw std::runtime_error(index_name + ": last case has no end");
    return cases;
}

// The dense losses' cases: golden.index and golden.bin.
inline std::vector<golden_case> load(const std::string& dir) { return load(dir, "golden"); }

}  // namespace golden
