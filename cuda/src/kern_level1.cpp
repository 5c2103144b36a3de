#define LSW_LEVEL 1
#define LSW_KNS k1
#include "kern_impl.inc"
