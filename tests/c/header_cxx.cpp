// header_cxx.cpp — include/parml.h must compile as C++17 (g++ -Wall -Wextra
// -Werror -pedantic) and link: its declarations have C linkage.
#include "parml.h"

#include <cstdio>

int main() {
    parml_optimizer_params o{};
    if (parml_optimizer_params_init(&o) != PARML_OK || o.struct_size != sizeof o) return 1;
    if (parml_version_number() != PARML_VERSION_NUMBER) {
        std::printf("header %d, library %d\n", PARML_VERSION_NUMBER, static_cast<int>(parml_version_number()));
        return 1;
    }
    std::printf("C++17 include ok, version %s\n", parml_version_string());
    return 0;
}
