"""The appliance as a systemd service: start-up, GPIO, sd_notify, the watchdog and `sayso doctor`."""
