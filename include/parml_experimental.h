/*
 * parml_experimental.h — the part of the parml C API that is not promised yet.
 *
 * Functions, constants and structs declared here may change or disappear in
 * any release, minor and patch included; they are not in the ABI record
 * (abi/parml.abi) and `make check-abi` does not guard them. docs/ABI.md gives
 * the rules. In short:
 *   - a host opts in by defining PARML_EXPERIMENTAL_API before including this
 *     header (or with -DPARML_EXPERIMENTAL_API); without it this header is an
 *     error, so no host depends on these declarations by accident;
 *   - every declaration is tagged [EXPERIMENTAL] and says since when;
 *   - an experimental function whose signature or meaning changes gets a new
 *     name; a name is never reused with another meaning;
 *   - a function leaves this header by moving to parml.h unchanged, in a minor
 *     release; from then on the stable rules apply to it.
 *
 * This release declares no experimental function: tensor, pipeline and data
 * parallelism and the MPI backend are all part of the stable API (parml.h).
 * The header exists so the opt-in is in place before the first experimental
 * function needs it.
 */
#ifndef PARML_EXPERIMENTAL_H
#define PARML_EXPERIMENTAL_H

#ifndef PARML_EXPERIMENTAL_API
#error "parml_experimental.h: define PARML_EXPERIMENTAL_API before including it; its declarations carry no ABI promise (docs/ABI.md)"
#endif

#include "parml.h"

#ifdef __cplusplus
extern "C" {
#endif

/* [EXPERIMENTAL] declarations go here: PARML_API, one or two lines of
 * documentation, and "Since: X.Y". None in this release. */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PARML_EXPERIMENTAL_H */
