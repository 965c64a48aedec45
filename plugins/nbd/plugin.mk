# The nbd backend plugin links libnbd (Debian: libnbd-dev).
PLUGIN_PKGS_nbd := libnbd
