/*
 * CHECK(call), for the C examples: a call that does not return PARML_OK
 * ends the program with the library's message (parml_last_error).
 */
#ifndef EXAMPLES_CHECK_H
#define EXAMPLES_CHECK_H

#include <parml.h>

#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                \
    do {                                                                           \
        parml_status s_ = (call);                                                  \
        if (s_ != PARML_OK) {                                                      \
            fprintf(stderr, "%s failed: %s\n", #call, parml_last_error());         \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

#endif
