/* dlqat's version (also written into the metadata of the files it makes). */
#ifndef DLQ_CORE_VERSION_H
#define DLQ_CORE_VERSION_H

#define DLQ_VERSION "0.7.0"

#endif
