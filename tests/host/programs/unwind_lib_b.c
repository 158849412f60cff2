/* The other library of the pair (see unwind_lib_a.c): a smaller frame,
 * still above 127 bytes so that both encode the same instructions. */
#define UNWIND_LIB_FRAME 400
#include "unwind_lib_a.c"
