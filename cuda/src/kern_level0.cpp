#define LSW_LEVEL 0
#define LSW_KNS k0
#include "kern_impl.inc"
