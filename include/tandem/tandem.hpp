// The public C++ API of Tandem (docs/embedding.md). Link Tandem::tandem (CMake) or
// `pkg-config --libs tandem`. The C API for other languages is tandem/tandem.h.
#pragma once

#include "tandem/database.hpp"
#include "tandem/status.hpp"
#include "tandem/types.hpp"
