// Compile-time checks of the public types header; the C target needs one source.
#include "parml_types.h"

_Static_assert(sizeof(parml_status) == 4, "parml_status is int32_t");
_Static_assert(offsetof(parml_optimizer_params, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(parml_strategy_params, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(parml_fit_params, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(parml_epoch_metrics, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(parml_memory_report, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(parml_token_params, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(parml_callback_params, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(parml_csv_params, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(parml_augment_params, struct_size) == 0, "struct_size first");
