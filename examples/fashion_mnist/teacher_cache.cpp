#include "teacher_cache.hpp"

#include <fstream>
#include <stdexcept>

namespace demo {
namespace {
constexpr const char* magic = "distill-demo-mlp v1";
}

bool load_teacher(const std::filesystem::path& file, const std::string& recipe, mlp& net) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return false;
    std::string file_magic, file_recipe;
    std::getline(in, file_magic);
    std::getline(in, file_recipe);
    if (file_magic != magic || file_recipe != recipe) return false;
    return net.load(in);
}

void save_teacher(const std::filesystem::path& file, const std::string& recipe, const mlp& net) {
    if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
    // Write then rename: an interrupted run must not leave a truncated cache that a later run trusts.
    const auto partial = std::filesystem::path(file.string() + ".partial");
    {
        std::ofstream out(partial, std::ios::binary);
        out << magic << '\n' << recipe << '\n';
        net.save(out);
        if (!out) throw std::runtime_error("cannot write the teacher cache " + partial.string());
    }
    std::filesystem::rename(partial, file);
}

}  // namespace demo
