// amanat: the form's files sent resumably, when the browser runs scripts. Without
// scripts (Tor Browser at "Safest") none of this runs and the form sends its files in
// one request, as it always has. With them, each file goes to /api/v1/uploads over the
// tus protocol (tus-js-client, served beside this file), picks up where it stopped
// after a dropped link, and the form is then sent with the uploads' ids instead of the
// files. Nothing about an upload is kept in the browser's storage.
(function () {
  "use strict";
  var form = document.querySelector("form[data-resumable]");
  if (!form || !window.tus || !window.tus.isSupported) {
    return;
  }
  var input = form.querySelector("input[type=file][name=evidence]");
  var status = document.getElementById("upload-status");
  var bar = document.getElementById("upload-progress");
  var words = document.getElementById("upload-words");
  var sending = false;

  function say(text) {
    status.hidden = false;
    words.textContent = text;
  }

  form.addEventListener("submit", function (event) {
    var files = input && input.files ? Array.prototype.slice.call(input.files) : [];
    if (sending) {
      event.preventDefault();
      return;
    }
    if (files.length === 0 || !form.checkValidity()) {
      return;
    }
    event.preventDefault();
    sending = true;
    var total = files.reduce(function (n, file) { return n + file.size; }, 0) || 1;
    var before = 0;
    var ids = [];
    say(form.dataset.sending);

    function send(i) {
      if (i === files.length) {
        // First in the form, so that a refusal of the text still finds them and the
        // page that comes back keeps them.
        ids.reverse().forEach(function (id) {
          var field = document.createElement("input");
          field.type = "hidden";
          field.name = "upload";
          field.value = id;
          form.insertBefore(field, form.firstChild);
        });
        // The files went already: the form itself carries only their uploads' ids.
        input.disabled = true;
        form.submit();
        return;
      }
      var file = files[i];
      var startedOver = false;
      var upload = new window.tus.Upload(file, {
        endpoint: "/api/v1/uploads",
        chunkSize: 5 * 1024 * 1024,
        retryDelays: [0, 1000, 3000, 5000, 10000, 20000, 30000, 60000, 60000, 60000, 60000],
        metadata: { filename: file.name, filetype: file.type || "application/octet-stream" },
        storeFingerprintForResuming: false,
        removeFingerprintOnSuccess: true,
        onProgress: function (sent) {
          bar.value = Math.floor((100 * (before + sent)) / total);
          say(startedOver ? form.dataset.restarted : form.dataset.sending);
        },
        // The server no longer has the upload (it restarted): tus-js-client starts the
        // file again, and the survivor is told why the bar went back.
        onAfterResponse: function (req, res) {
          if (req.getMethod() === "HEAD" && res.getStatus() === 404) {
            startedOver = true;
            say(form.dataset.restarted);
          }
        },
        onShouldRetry: function () {
          say(form.dataset.resuming);
          return true;
        },
        onError: function () {
          sending = false;
          say(form.dataset.failed);
        },
        onSuccess: function () {
          before += file.size;
          ids.push(upload.url.split("/").pop());
          send(i + 1);
        }
      });
      upload.start();
    }
    send(0);
  });
})();
