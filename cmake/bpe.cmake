# SPDX-License-Identifier: MIT
# pith::bpe: the BPE tokenizer (include/pith/io/tokenizer_bpe.hpp) with the two libraries it needs,
# PCRE2 (8-bit, 10.34+) for the pre-tokenizer regexes and utf8proc for normalization, both found
# with pkg-config. Only a program that includes tokenizer_bpe.hpp links it; pith::pith never needs them.
# Without the libraries the target is absent, unless PITH_BPE_REQUIRED makes that an error.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(PITH_PCRE2 QUIET IMPORTED_TARGET GLOBAL libpcre2-8>=10.34)
  pkg_check_modules(PITH_UTF8PROC QUIET IMPORTED_TARGET GLOBAL libutf8proc)
endif()
if(TARGET PkgConfig::PITH_PCRE2 AND TARGET PkgConfig::PITH_UTF8PROC)
  add_library(pith_bpe INTERFACE)
  add_library(pith::bpe ALIAS pith_bpe)
  set_target_properties(pith_bpe PROPERTIES EXPORT_NAME bpe)
  target_link_libraries(pith_bpe INTERFACE pith PkgConfig::PITH_PCRE2 PkgConfig::PITH_UTF8PROC)
elseif(PITH_BPE_REQUIRED)
  message(FATAL_ERROR "pith::bpe needs PCRE2 (libpcre2-8 >= 10.34) and utf8proc found with pkg-config "
                      "(Debian: cmake/setup-debian.sh installs libpcre2-dev and libutf8proc-dev); "
                      "or configure with -DPITH_BPE_REQUIRED=OFF to build without the BPE tokenizer")
else()
  message(STATUS "pith: PCRE2 or utf8proc not found with pkg-config; pith::bpe is not defined")
endif()
