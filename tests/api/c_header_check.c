/* tandem.h compiles as C (C99) on its own: the C API is usable from C and by binding
   generators that parse C headers. */
#include "tandem/tandem.h"

int tandem_c_header_check(void) {
  tandem_value v = {TANDEM_INTEGER, 1, 0.0, 0, 0};
  tandem_sync_state st = {0, 0, 0, 0, 0};
  return (int)(v.integer + st.syncing) + (int)sizeof(tandem_options);
}
