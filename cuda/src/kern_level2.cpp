#define LSW_LEVEL 2
#define LSW_KNS k2
#include "kern_impl.inc"
