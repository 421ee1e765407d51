/* libFuzzer entry point shared by the harnesses and the standalone replay driver. */
#ifndef IMS_FUZZ_H
#define IMS_FUZZ_H
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
#endif
