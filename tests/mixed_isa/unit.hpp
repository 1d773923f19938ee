// The three units of the mixed instruction-set test (unit.cpp, compiled three times).
#pragma once

struct unit_result {
    const char* isa;  // the instruction set the unit was compiled for
    double api;       // one KL row through the public API
    double kernel;    // the same row through the unit's own backend, called directly
    double api_bf16;     // the row rounded to bfloat16, through the public API (its own load and store helpers)
    double kernel_bf16;  // and through the unit's own backend
};

unit_result unit_baseline();
unit_result unit_native();
unit_result unit_no_simd();
