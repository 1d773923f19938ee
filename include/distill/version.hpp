// distill/version.hpp - the library's version, kept equal to project(VERSION) in CMakeLists.txt.
#pragma once

#define DISTILL_VERSION_MAJOR 0
#define DISTILL_VERSION_MINOR 1
#define DISTILL_VERSION_PATCH 0
