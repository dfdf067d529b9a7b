"""Denoisers, called as ``net(x_t, t[, class_labels])``; they never see the schedule."""
