// The teacher takes most of the demo's time, so a trained one is kept on disk and reused when the
// recipe that produced it is the same.
#pragma once

#include "mlp.hpp"

#include <filesystem>
#include <string>

namespace demo {

// `recipe` is a one-line description of everything that shaped the weights (sizes, epochs, seed,
// learning rate, ...): a cache written under another recipe is ignored, never half-reused.
bool load_teacher(const std::filesystem::path& file, const std::string& recipe, mlp& net);
void save_teacher(const std::filesystem::path& file, const std::string& recipe, const mlp& net);

}  // namespace demo
