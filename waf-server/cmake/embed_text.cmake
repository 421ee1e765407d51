# Generates a C file defining a text file's content as a NUL-terminated string.
# cmake -DINPUT=file -DOUTPUT=file.c -DSYMBOL=name -P embed_text.cmake
file(READ ${INPUT} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
get_filename_component(base ${INPUT} NAME)
file(WRITE ${OUTPUT}.tmp
  "/* Generated from ${base} by embed_text.cmake: do not edit. */\n"
  "extern const char *const ${SYMBOL};\n"
  "static const unsigned char bytes[] = {${bytes}0};\n"
  "const char *const ${SYMBOL} = (const char *)bytes;\n")
file(COPY_FILE ${OUTPUT}.tmp ${OUTPUT} ONLY_IF_DIFFERENT)
