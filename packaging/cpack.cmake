# The Debian package, from this CMake tree with CPack's DEB generator:
#   cmake -S . -B build -DCMAKE_INSTALL_PREFIX=/usr && cmake --build build
#   cd build && cpack -G DEB
# CPack packs exactly what `cmake --install` installs, so the package and a
# source install cannot drift apart, and no debian/ directory (rules,
# changelog, compat, a second copy of the file list) has to be kept in step.
# dpkg-shlibdeps (package dpkg-dev) writes Depends: from the libraries the
# binaries link.
set(CPACK_PACKAGE_NAME kiln)
set(CPACK_PACKAGE_VENDOR "kiln")
set(CPACK_PACKAGE_CONTACT "${KILN_DEB_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "keeps a Docker registry in step with a git repository of images")
set(CPACK_PACKAGE_DESCRIPTION "kiln finds the image folders (a manifest.yaml and a Dockerfile each) that a
change of a git repository touches, and those building FROM them. kiln, the
command-line tool, lists and builds them for CI pipelines; kilnd, the daemon,
watches repositories and builds, tests and pushes each affected image
through the Docker Engine API.")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Debian ships stripped binaries (debug symbols go to -dbgsym packages)
set(CPACK_STRIP_FILES ON)
# postinst uses adduser where systemd-sysusers is missing (systemd is only
# recommended: kiln itself runs without it)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd, docker.io | docker-ce")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# The unit, the conffile and the maintainer scripts name /usr/bin/kilnd and
# /etc/kiln: a package from a tree configured for another prefix would not
# start. cpack refuses it (this file runs at cpack time).
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
configure_file(${CMAKE_CURRENT_LIST_DIR}/deb/check-prefix.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/deb/check-prefix.cmake @ONLY)
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_CURRENT_BINARY_DIR}/deb/check-prefix.cmake)
configure_file(${CMAKE_CURRENT_LIST_DIR}/deb/conffiles.in ${CMAKE_CURRENT_BINARY_DIR}/deb/conffiles @ONLY)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_CURRENT_BINARY_DIR}/deb/conffiles
  ${CMAKE_CURRENT_LIST_DIR}/deb/postinst
  ${CMAKE_CURRENT_LIST_DIR}/deb/prerm
  ${CMAKE_CURRENT_LIST_DIR}/deb/postrm)
set(CPACK_GENERATOR DEB)
include(CPack)
