// TANDEM_API marks what libtandem.so exports; everything else in it is hidden.
#pragma once

#if defined(__GNUC__)
#define TANDEM_API __attribute__((visibility("default")))
#else
#define TANDEM_API
#endif
