//! What `ca info` and `ca list` print (to be written).
