// distill/distill.hpp - everything: #include <distill/distill.hpp> and link distill::distill.
#pragma once

#include "cross_entropy.hpp"
#include "distillation_loss.hpp"
#include "divergence.hpp"
#include "divergence_loss.hpp"
#include "executor.hpp"
#include "kl_divergence.hpp"
#include "logits.hpp"
#include "reduction.hpp"
#include "row_count.hpp"
#include "shard_records.hpp"
#include "sharded.hpp"
#include "simd_level.hpp"
#include "softmax.hpp"
#include "status.hpp"
#include "top_k_distillation_loss.hpp"
#include "version.hpp"
